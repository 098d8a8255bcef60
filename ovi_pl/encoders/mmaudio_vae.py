"""MMAudio's 1D mel VAE (the 16 kHz `v1-16.pth`), key-compatible with the released checkpoint.

The network is built from EDM2's magnitude-preserving pieces: convolutions whose weights are
normalised per output channel on every call (the checkpoint stores the raw weights), pixel norm
at the input of each residual block, SiLU divided by 0.596 and residual sums that keep unit
variance. Input is a log-mel spectrogram [B, 80, T], normalised per mel bin with the dataset
mean/std stored in the checkpoint (`data_mean`, `data_std`); the encoder halves T once and emits
mean and log-variance of 20 latent channels. At 16 kHz with hop 256 that is 31.25 latents/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Activations are clamped after every stage, as the reference does, so fp16/bf16 cannot overflow.
_CLIP = 256.0
# Residual branch weight of every magnitude-preserving sum in this network.
_RES_T = 0.3


@dataclass(frozen=True)
class MMAudioVAEConfig:
    data_dim: int = 80
    latent_dim: int = 20
    hidden_dim: int = 384
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    # Levels after which the encoder halves time (and the decoder doubles it back).
    down_levels: tuple[int, ...] = (0,)
    kernel_size: int = 3

    @property
    def time_downsample(self) -> int:
        return 2 ** len(self.down_levels)


def _unit_norm(x: Tensor, dim: int | tuple[int, ...], eps: float = 1e-4) -> Tensor:
    """x scaled to unit RMS over `dim` (EDM2's normalize); the norm is taken in float32."""
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    count = math.prod(x.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
    return x / (eps + norm / math.sqrt(count)).to(x.dtype)


def mp_silu(x: Tensor) -> Tensor:
    # 0.596 is the standard deviation of SiLU(N(0, 1)).
    return F.silu(x) / 0.596


def mp_sum(a: Tensor, b: Tensor, t: float = _RES_T) -> Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


class MPConv1d(nn.Module):
    """Bias-free Conv1d with forced weight normalisation: each output filter is rescaled to unit
    norm over fan-in on every call, so the stored `weight` may have any scale."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size))

    def normalized_weight(self) -> Tensor:
        w = self.weight.float()
        w = _unit_norm(w, dim=(1, 2)) / math.sqrt(w[0].numel())
        return w.to(self.weight.dtype)

    def forward(self, x: Tensor, gain: Tensor | float = 1.0) -> Tensor:
        w = self.normalized_weight() * gain
        return F.conv1d(x, w, padding=w.shape[-1] // 2)


class ResBlock1d(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = MPConv1d(in_dim, out_dim, kernel_size)
        self.conv2 = MPConv1d(out_dim, out_dim, kernel_size)
        # Only a channel change needs a projection on the skip path.
        self.nin_shortcut = MPConv1d(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: Tensor) -> Tensor:
        x = _unit_norm(x, dim=1)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return mp_sum(x, h)


class SelfAttention1d(nn.Module):
    """Single-head self-attention over time with unit-normalised q, k, v (cosine attention)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = MPConv1d(dim, 3 * dim, 1)
        self.proj_out = MPConv1d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        # The checkpoint interleaves q, k, v per channel: qkv channel 3*i + j is part j of channel i.
        q, k, v = _unit_norm(self.qkv(x).reshape(b, 1, c, 3, t), dim=2).unbind(3)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(b, c, t)
        return mp_sum(x, self.proj_out(h))


class Downsample1d(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = MPConv1d(dim, dim, 1)
        self.conv2 = MPConv1d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class Upsample1d(nn.Module):
    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = MPConv1d(dim, dim, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))


class _Middle(nn.Module):
    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.block_1 = ResBlock1d(dim, dim, kernel_size)
        self.attn_1 = SelfAttention1d(dim)
        self.block_2 = ResBlock1d(dim, dim, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x))).clamp(-_CLIP, _CLIP)


class _Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, then an optional resampler."""

    def __init__(self, dims: list[tuple[int, int]], kernel_size: int, resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResBlock1d(i, o, kernel_size) for i, o in dims)
        if resample is not None:
            self.add_module(name, resample)
        self._resample_name = name if resample is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x).clamp(-_CLIP, _CLIP)
        if self._resample_name is not None:
            x = getattr(self, self._resample_name)(x)
        return x


class Encoder1d(nn.Module):
    def __init__(self, cfg: MMAudioVAEConfig) -> None:
        super().__init__()
        k, dim = cfg.kernel_size, cfg.hidden_dim
        self.conv_in = MPConv1d(cfg.data_dim, dim, k)
        self.down = nn.ModuleList()
        ch = dim
        for level, mult in enumerate(cfg.ch_mult):
            out = dim * mult
            dims = [(ch if i == 0 else out, out) for i in range(cfg.num_res_blocks)]
            resample = Downsample1d(out) if level in cfg.down_levels else None
            self.down.append(_Level(dims, k, resample, "downsample"))
            ch = out
        self.mid = _Middle(ch, k)
        self.conv_out = MPConv1d(ch, 2 * cfg.latent_dim, k)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, mel: Tensor) -> Tensor:
        h = self.conv_in(mel)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class Decoder1d(nn.Module):
    def __init__(self, cfg: MMAudioVAEConfig) -> None:
        super().__init__()
        k, dim = cfg.kernel_size, cfg.hidden_dim
        ch = dim * cfg.ch_mult[-1]
        self.conv_in = MPConv1d(cfg.latent_dim, ch, k)
        self.mid = _Middle(ch, k)
        # Built deepest-first (the order data flows), stored shallowest-first (the checkpoint's indices).
        levels: list[_Level] = []
        for level in reversed(range(len(cfg.ch_mult))):
            out = dim * cfg.ch_mult[level]
            dims = [(ch if i == 0 else out, out) for i in range(cfg.num_res_blocks + 1)]
            # The encoder's downsample after level i is undone after decoder level i + 1.
            resample = Upsample1d(out, k) if level - 1 in cfg.down_levels else None
            levels.insert(0, _Level(dims, k, resample, "upsample"))
            ch = out
        self.up = nn.ModuleList(levels)
        self.conv_out = MPConv1d(ch, cfg.data_dim, k)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class MMAudioVAE(nn.Module):
    """mel [B, 80, T] <-> latents [B, 20, T / 2] (channels first, as the reference)."""

    def __init__(self, cfg: MMAudioVAEConfig = MMAudioVAEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        # Placeholders; the checkpoint carries the dataset's per-bin statistics.
        self.register_buffer("data_mean", torch.zeros(1, cfg.data_dim, 1))
        self.register_buffer("data_std", torch.ones(1, cfg.data_dim, 1))
        self.encoder = Encoder1d(cfg)
        self.decoder = Decoder1d(cfg)

    def encode(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance (clamped to [-30, 20] as the reference), each [B, 20, T / 2]."""
        moments = self.encoder((mel - self.data_mean) / self.data_std)
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z) * self.data_std + self.data_mean
