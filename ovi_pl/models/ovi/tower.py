"""One DiT tower class for both modalities (Wan2.2-style blocks with adaLN modulation).

A video tower patchifies [B, 48, F, H, W] latents with a Conv3d and uses a 3D RoPE; an audio
tower embeds [B, L, 20] latents with Conv1d + ConvMLP and uses a scaled, partial 1D RoPE. Both
produce velocity predictions of their input's shape. With `fusion=True` each block's
cross-attention also owns the layers that attend to the other tower (see fusion.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ovi_pl.models.ovi.config import TowerConfig
from ovi_pl.models.ovi.layers import (
    AudioPatchEmbedding,
    CrossAttention,
    FusionSource,
    Head,
    LayerNorm,
    Modulation,
    RotaryTables,
    SelfAttention,
    VideoPatchEmbedding,
    float32_time_mlp,
    init_linear_xavier,
    modulate,
    sinusoidal_embedding,
)
from ovi_pl.models.ovi.rope import audio_rope_angles, rope_cos_sin, video_rope_angles


@dataclass
class TowerState:
    """What every block of a tower needs for one forward pass, computed once by `DiTTower.embed`."""

    tokens: Tensor  # [B, L, dim] hidden state entering the first block
    time_embedding: Tensor  # [B, L or 1, dim], for the head
    time_projection: Tensor  # [B, L or 1, 6, dim], shared by all blocks' modulation
    text: Tensor  # [B, text_len, dim] embedded prompt
    rope: RotaryTables
    grid: tuple[int, ...]  # (F', H', W') for video, (L,) for audio


class TokenSharding(Protocol):
    """Where a tower's tokens live between embedding and head (context parallel sets one)."""

    def shard(self, state: TowerState) -> TowerState:
        """The part of a freshly embedded state that this rank computes."""

    def gather(self, tokens: Tensor, state: TowerState) -> Tensor:
        """Every token of the head's output [B, L, C], from this rank's part."""


class DiTBlock(nn.Module):
    """Self-attention, text (and fusion) cross-attention and FFN, each gated by adaLN modulation.

    The steps are separate methods because fusion interleaves two towers' blocks between them.
    """

    def __init__(self, cfg: TowerConfig, fusion: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg.dim, cfg.num_heads, cfg.eps)
        self.norm3 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg.dim, cfg.num_heads, cfg.eps, fusion=fusion)
        self.norm2 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim)
        )
        self.modulation = Modulation(cfg.dim, 6)

    def self_attention_step(self, x: Tensor, mod: tuple[Tensor, ...], state: TowerState) -> Tensor:
        shift, scale, gate = mod[0], mod[1], mod[2]
        return x + self.self_attn(modulate(self.norm1(x), shift, scale), state.rope) * gate

    def cross_attention_ffn_step(
        self, x: Tensor, mod: tuple[Tensor, ...], state: TowerState, other: FusionSource | None = None
    ) -> Tensor:
        x = x + self.cross_attn(self.norm3(x), state.text, state.rope, other)
        shift, scale, gate = mod[3], mod[4], mod[5]
        return x + self.ffn(modulate(self.norm2(x), shift, scale)) * gate

    def forward(self, x: Tensor, state: TowerState) -> Tensor:
        mod = self.modulation(state.time_projection)
        return self.cross_attention_ffn_step(self.self_attention_step(x, mod, state), mod, state)


class DiTTower(nn.Module):
    """A complete single-modality DiT: embeddings, blocks and output head."""

    def __init__(self, cfg: TowerConfig, fusion: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.modality == "video":
            self.patch_embedding: nn.Module = VideoPatchEmbedding(cfg.in_channels, cfg.dim, cfg.patch_size)
        else:
            self.patch_embedding = AudioPatchEmbedding(
                cfg.in_channels, cfg.dim, cfg.audio_embed_hidden_dim, cfg.audio_embed_kernel
            )
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))
        self.blocks = nn.ModuleList(DiTBlock(cfg, fusion) for _ in range(cfg.num_layers))
        self.head = Head(cfg.dim, cfg.out_channels * math.prod(cfg.patch_size), cfg.eps)
        # Set by `parallelize`: recompute each block in backward instead of storing activations.
        self.activation_checkpointing = False
        # Set by `parallelize` for context parallel: blocks see only this rank's part of the tokens.
        self.token_sharding: TokenSharding | None = None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Reference initialisation; also re-initialises a model materialised from the meta device."""
        init_linear_xavier(self)
        for module in self.modules():
            if isinstance(module, (nn.LayerNorm, nn.RMSNorm, Modulation)):
                module.reset_parameters()
        if isinstance(self.patch_embedding, VideoPatchEmbedding):
            proj = self.patch_embedding.proj
            nn.init.xavier_uniform_(proj.weight.flatten(1))
            nn.init.zeros_(proj.bias)
        else:
            for conv in self.patch_embedding.modules():
                if isinstance(conv, nn.Conv1d):
                    conv.reset_parameters()
        for seq in (self.text_embedding, self.time_embedding):
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        # A zero head makes the untrained model predict zero velocity.
        nn.init.zeros_(self.head.proj.weight)
        nn.init.zeros_(self.head.proj.bias)

    def embed(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor,
        lengths: Tensor | None = None,
        first_frame_clean: bool = False,
    ) -> TowerState:
        """Tokens, timestep modulation, text embedding and RoPE tables for one forward pass.

        x: video [B, C, F, H, W] or audio [B, L, C]; t: [B] model time in [0, 1000];
        context: [B, <=text_len, text_dim] prompt embeddings, zero past each prompt's end;
        lengths: audio only, true latent count per sample (None: all L are real);
        first_frame_clean: video only, the first latent frame is clean (t = 0) for image-to-video.
        """
        cfg = self.cfg
        if lengths is not None and cfg.modality == "video":
            raise ValueError("lengths is for padded audio batches; video batches share one grid")
        if first_frame_clean and cfg.modality == "audio":
            raise ValueError("first_frame_clean applies to the video tower only")
        if lengths is not None and not bool(((lengths >= 1) & (lengths <= x.shape[1])).all()):
            raise ValueError(f"audio lengths must be in [1, {x.shape[1]}], got {lengths.tolist()}")
        if context.shape[1] > cfg.text_len:
            raise ValueError(f"context has {context.shape[1]} tokens; this tower takes at most {cfg.text_len}")

        # Latents take the compute dtype here rather than at an FSDP boundary, which would round t too.
        x = x.to(next(self.patch_embedding.parameters()).dtype)
        if cfg.modality == "video":
            tokens, grid = self.patch_embedding(x)
            angles = video_rope_angles(grid, cfg.head_dim, cfg.rope_theta)
        else:
            tokens, grid = self.patch_embedding(x, lengths)
            positions = torch.arange(grid[0])
            angles = audio_rope_angles(positions, cfg.head_dim, cfg.rope_theta, cfg.temporal_rope_scale)
        cos, sin = rope_cos_sin(angles, tokens.device)

        time_embedding, time_projection = self._timestep_modulation(t, tokens, grid, first_frame_clean)
        text = nn.functional.pad(context, (0, 0, 0, cfg.text_len - context.shape[1]))
        state = TowerState(
            tokens=tokens,
            time_embedding=time_embedding,
            time_projection=time_projection,
            text=self.text_embedding(text.to(tokens.dtype)),
            rope=RotaryTables(cos, sin, lengths),
            grid=grid,
        )
        return state if self.token_sharding is None else self.token_sharding.shard(state)

    def _timestep_modulation(
        self, t: Tensor, tokens: Tensor, grid: tuple[int, ...], first_frame_clean: bool
    ) -> tuple[Tensor, Tensor]:
        # [B, 1] (one time per sample), or [B, 2] = (clean first frame, noisy rest).
        times = torch.stack([torch.zeros_like(t), t], dim=1) if first_frame_clean else t[:, None]
        # In float32 from the caller's timestep, as the reference does: a bf16 t is 995.9 -> 996.0.
        # Only the result takes the compute dtype.
        with torch.autocast(tokens.device.type, enabled=False):
            emb = float32_time_mlp(self.time_embedding, sinusoidal_embedding(times, self.cfg.freq_dim))
            proj = float32_time_mlp(self.time_projection, emb).unflatten(-1, (6, self.cfg.dim))
        emb, proj = emb.to(tokens.dtype), proj.to(tokens.dtype)
        if first_frame_clean:
            frame_tokens = grid[1] * grid[2]
            which = (torch.arange(tokens.shape[1], device=t.device) >= frame_tokens).long()
            emb, proj = emb[:, which], proj[:, which]
        return emb, proj

    def unembed(self, x: Tensor, state: TowerState) -> Tensor:
        """Head and unpatchify: tokens -> velocity of the input's shape."""
        out = self.head(x, state.time_embedding)
        if self.token_sharding is not None:
            out = self.token_sharding.gather(out, state)
        if self.cfg.modality == "audio":
            return out
        frames, height, width = state.grid
        pt, ph, pw = self.cfg.patch_size
        out = out.unflatten(-1, (pt, ph, pw, self.cfg.out_channels)).unflatten(1, (frames, height, width))
        # [B, F, H, W, pt, ph, pw, C] -> [B, C, F*pt, H*ph, W*pw]
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(out.shape[0], self.cfg.out_channels, frames * pt, height * ph, width * pw)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor,
        lengths: Tensor | None = None,
        first_frame_clean: bool = False,
    ) -> Tensor:
        """Single-tower velocity prediction (audio pretraining, or a video-only model)."""
        state = self.embed(x, t, context, lengths, first_frame_clean)
        h = state.tokens
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                h = checkpoint(block, h, state, use_reentrant=False)
            else:
                h = block(h, state)
        return self.unembed(h, state)
