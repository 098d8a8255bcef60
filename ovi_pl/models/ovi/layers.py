"""Building blocks of a DiT tower: norms, adaLN modulation, attention, patch embeddings, head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ovi_pl.models.attention import Attention
from ovi_pl.models.ovi.rope import apply_rope


class RMSNorm(nn.RMSNorm):
    """RMSNorm computed in float32 whatever the activation dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        return F.rms_norm(x.float(), self.normalized_shape, weight, self.eps).type_as(x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activation dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Modulation(nn.Module):
    """Learned per-block offset added to the shared timestep projection (adaLN-single style)."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.empty(1, count, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.offset.normal_(std=self.offset.shape[-1] ** -0.5)

    def forward(self, timestep_projection: Tensor) -> tuple[Tensor, ...]:
        """[B, L or 1, count, dim] -> `count` tensors of [B, L or 1, dim]."""
        return (self.offset + timestep_projection).unbind(dim=2)


@dataclass
class RotaryTables:
    """Cos/sin tables [L, head_dim/2] of one modality's tokens and their true lengths [B] (None: all real)."""

    cos: Tensor
    sin: Tensor
    lengths: Tensor | None


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps=eps)
        self.norm_k = RMSNorm(dim, eps=eps)
        # A module so that context parallel can replace it (parallelize.py).
        self.attention = Attention()

    def heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def forward(self, x: Tensor, rope: RotaryTables) -> Tensor:
        q = apply_rope(self.heads(self.norm_q(self.q(x))), rope.cos, rope.sin)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), rope.cos, rope.sin)
        out = self.attention(q, k, self.heads(self.v(x)), k_lens=rope.lengths)
        return self.o(out.flatten(2))


@dataclass
class FusionSource:
    """The other modality's hidden state as seen by fusion attention, with its positions."""

    hidden: Tensor
    rope: RotaryTables


class CrossAttention(SelfAttention):
    """Text cross-attention; with `fusion`, also attends to the other tower's tokens.

    Both attentions share the query and output projections; their results are summed before `o`.
    Text keys are unrotated and unmasked (text is zero-padded to a fixed length); fusion keys are
    rotated with the other modality's RoPE and masked by its true lengths. Text attention is a
    plain call: every query sees every text key, so a slice of the queries needs no other rank.
    """

    def __init__(self, dim: int, num_heads: int, eps: float, fusion: bool) -> None:
        super().__init__(dim, num_heads, eps)
        self.has_fusion = fusion
        if fusion:
            self.pre_attn_norm_fusion = LayerNorm(dim, eps=eps, elementwise_affine=True)
            self.k_fusion = nn.Linear(dim, dim)
            self.v_fusion = nn.Linear(dim, dim)
            self.norm_k_fusion = RMSNorm(dim, eps=1e-6)
            self.fusion_attention = Attention()

    def forward(  # type: ignore[override]
        self, x: Tensor, text: Tensor, rope: RotaryTables, other: FusionSource | None = None
    ) -> Tensor:
        q = self.heads(self.norm_q(self.q(x)))
        out = self.attention(q, self.heads(self.norm_k(self.k(text))), self.heads(self.v(text)))
        if other is not None:
            if not self.has_fusion:
                raise RuntimeError("this tower was built without fusion layers; build it with fusion=True")
            source = self.pre_attn_norm_fusion(other.hidden)
            k = apply_rope(self.heads(self.norm_k_fusion(self.k_fusion(source))), other.rope.cos, other.rope.sin)
            q_rotated = apply_rope(q, rope.cos, rope.sin)
            out = out + self.fusion_attention(
                q_rotated, k, self.heads(self.v_fusion(source)), k_lens=other.rope.lengths
            )
        return self.o(out.flatten(2))


class ChannelLastConv1d(nn.Conv1d):
    """Conv1d over [B, L, C] sequences."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class VideoPatchEmbedding(nn.Module):
    """Conv3d patchifier: [B, C, F, H, W] -> tokens [B, F'*H'*W', dim] and the grid (F', H', W')."""

    def __init__(self, in_channels: int, dim: int, patch_size: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        tokens = self.proj(x)
        return tokens.flatten(2).transpose(1, 2), tuple(tokens.shape[2:])


class AudioPatchEmbedding(nn.Module):
    """Conv1d -> SiLU -> SwiGLU ConvMLP over audio latents [B, L, C], one token per latent.

    Padded positions are zeroed between convolutions so that a padded sample embeds exactly as it
    would alone: the kernels see zeros past its end, as in the reference's unpadded per-sample pass.
    """

    def __init__(self, in_channels: int, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        padding = kernel // 2
        self.conv = ChannelLastConv1d(in_channels, dim, kernel_size=kernel, padding=padding)
        self.mlp = nn.ModuleDict(
            {
                name: ChannelLastConv1d(d_in, d_out, kernel_size=kernel, padding=padding, bias=False)
                for name, d_in, d_out in (("w1", dim, hidden), ("w2", hidden, dim), ("w3", dim, hidden))
            }
        )

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, tuple[int, ...]]:
        keep = None if lengths is None else (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None])

        def masked(h: Tensor) -> Tensor:
            return h if keep is None else h * keep[..., None].to(h.dtype)

        h = masked(F.silu(self.conv(masked(x))))
        gated = masked(F.silu(self.mlp["w1"](h)) * self.mlp["w3"](h))
        return masked(self.mlp["w2"](gated)), (x.shape[1],)


class Head(nn.Module):
    """Final LayerNorm + Linear with 2-way modulation (shift, scale), zero-initialised."""

    def __init__(self, dim: int, out_features: int, eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.proj = nn.Linear(dim, out_features)
        self.modulation = Modulation(dim, 2)

    def forward(self, x: Tensor, time_embedding: Tensor) -> Tensor:
        shift, scale = self.modulation(time_embedding.unsqueeze(2))
        return self.proj(modulate(self.norm(x), shift, scale))


def sinusoidal_embedding(timesteps: Tensor, dim: int) -> Tensor:
    """[...] -> [..., dim] as cos then sin of timesteps x 10000^(-i/half), in float64."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timesteps.device) / half)
    angles = timesteps.to(torch.float64)[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def float32_time_mlp(layers: nn.Sequential, x: Tensor) -> Tensor:
    """Apply a Linear/activation stack in float32 whatever dtype its weights are held in.

    The timestep MLPs are tiny, and their input moves fast with t (cos(t) at frequency 1): a bf16
    weight-by-input product would blur timesteps a few units apart, which the reference keeps apart.
    """
    x = x.float()
    for layer in layers:
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.float()
            x = F.linear(x, layer.weight.float(), bias)
        else:
            x = layer(x)
    return x


def init_linear_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear below `module`."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
