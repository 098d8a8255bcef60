"""Ulysses context parallelism: the pieces that `parallelize.apply_context_parallel` installs.

Each rank of a context group holds a contiguous slice of every tower's tokens between embedding
and head. Attention over tokens (a tower's self-attention, and fusion attention over the other
tower) trades this rank's sequence slice of all heads for every token of a slice of the heads
with one all-to-all per q, k and v, runs the ordinary kernel with the global key lengths, and
trades back. Text cross-attention needs no exchange: its keys are replicated on every rank.

Gradients: `SequenceShards.gather` all-gathers the head's output, so every rank of a group holds
the whole prediction and computes the whole loss; the gather's backward sums those identical
copies, which makes each rank's parameter gradients `size` times its share. FSDP2 averages over
data x context ranks, which leaves the data-parallel mean of whole-sample gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.distributed import ProcessGroup
from torch.distributed._functional_collectives import all_gather_single_autograd, all_to_all_single_autograd

from ovi_pl.models.attention import Attention
from ovi_pl.models.ovi.layers import RotaryTables
from ovi_pl.models.ovi.tower import TowerState


@dataclass(frozen=True)
class SequenceShards:
    """This rank's slice of a tower's tokens: `rank` of a context group of `size` ranks.

    Token counts are padded up to a multiple of `size`. The padding becomes keys of attention,
    so a tower without lengths gets lengths = its true token count; padded audio keeps its own
    lengths, which already end before the padding. Padding and masked keys may fall on any rank.
    """

    group: ProcessGroup
    rank: int
    size: int

    def shard(self, state: TowerState) -> TowerState:
        """Keep this rank's slice of the tokens, RoPE tables and per-token modulation."""
        batch, length = state.tokens.shape[:2]
        padded = math.ceil(length / self.size) * self.size
        lengths = state.rope.lengths
        if padded > length and lengths is None:
            lengths = torch.full((batch,), length, device=state.tokens.device, dtype=torch.long)
        return replace(
            state,
            tokens=self._slice(state.tokens, 1, padded),
            # [B, 1, ...] is one modulation for every token; [B, L, ...] is per token (image-to-video).
            time_embedding=self._slice_per_token(state.time_embedding, padded),
            time_projection=self._slice_per_token(state.time_projection, padded),
            rope=RotaryTables(self._slice(state.rope.cos, 0, padded), self._slice(state.rope.sin, 0, padded), lengths),
        )

    def gather(self, tokens: Tensor, state: TowerState) -> Tensor:
        """[B, L/size, C] slices of the group -> the whole [B, L, C], padding dropped."""
        whole = all_gather_single_autograd(tokens.contiguous(), gather_dim=1, group=self.group)
        return whole[:, : math.prod(state.grid)]

    def _slice_per_token(self, x: Tensor, padded: int) -> Tensor:
        return x if x.shape[1] == 1 else self._slice(x, 1, padded)

    def _slice(self, x: Tensor, dim: int, padded: int) -> Tensor:
        missing = padded - x.shape[dim]
        if missing:
            x = torch.cat([x, x.new_zeros(*x.shape[:dim], missing, *x.shape[dim + 1 :])], dim=dim)
        chunk = padded // self.size
        return x.narrow(dim, self.rank * chunk, chunk)


class UlyssesAttention(Attention):
    """Attention over sequence-sharded q, k, v [B, L/size, H, D]: heads are exchanged for sequence.

    Needs H divisible by the group size. k_lens are global (they index the whole key sequence).
    """

    def __init__(self, group: ProcessGroup, size: int) -> None:
        super().__init__()
        self.group = group
        self.size = size

    def forward(self, q: Tensor, k: Tensor, v: Tensor, k_lens: Tensor | None = None) -> Tensor:
        q, k, v = (self._sequence_to_heads(x) for x in (q, k, v))
        return self._heads_to_sequence(super().forward(q, k, v, k_lens))

    def _sequence_to_heads(self, x: Tensor) -> Tensor:
        """[B, L/size, H, D] -> [B, L, H/size, D]: head group i goes to rank i."""
        outgoing = x.unflatten(2, (self.size, -1)).permute(2, 0, 1, 3, 4).contiguous()
        incoming = all_to_all_single_autograd(outgoing, None, None, self.group)
        # Chunk j came from rank j and holds sequence slice j.
        return incoming.transpose(0, 1).flatten(1, 2)

    def _heads_to_sequence(self, x: Tensor) -> Tensor:
        """[B, L, H/size, D] -> [B, L/size, H, D]: sequence slice i goes back to rank i."""
        outgoing = x.unflatten(1, (self.size, -1)).transpose(0, 1).contiguous()
        incoming = all_to_all_single_autograd(outgoing, None, None, self.group)
        # Chunk j came from rank j and holds head group j of this rank's slice.
        return incoming.permute(1, 2, 0, 3, 4).flatten(2, 3)
