"""BigVGAN (v1) vocoder at MMAudio's 16 kHz setting, key-compatible with its `best_netG.pt`.

mel [B, 80, T] -> waveform [B, 1, 256 T]. Six transposed-conv upsamplers, each followed by the
average of three anti-aliased multi-periodicity (AMP) residual blocks; SnakeBeta activations run
at twice the sample rate between Kaiser-windowed sinc low-pass filters to avoid aliasing.
Convolutions use torch's weight_norm parametrization, so the state dict carries
`*.parametrizations.weight.original0/1` exactly like the reference module; files written with the
older `weight_g`/`weight_v` names load too (torch converts them on load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations


@dataclass(frozen=True)
class BigVGANConfig:
    """Defaults are the 16 kHz vocoder's `bigvgan_vocoder.yml` (resblock '1', snakebeta, log-scale)."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)


def kaiser_sinc_lowpass(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """[1, 1, kernel_size] windowed-sinc low-pass filter with unit DC gain.

    cutoff and half_width are in cycles per sample; the Kaiser beta follows the usual
    attenuation formula for a transition band of 2 * half_width.
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    # Even kernels are centred between two taps.
    t = torch.arange(-half, half) + 0.5 if kernel_size % 2 == 0 else torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        # Persistent: the released checkpoint stores the filter taps.
        self.register_buffer("filter", kaiser_sinc_lowpass(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_lowpass(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta per channel, alpha and beta stored as logarithms."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + torch.sin(x * alpha).square() / (beta + 1e-9)


class AntiAliasedActivation(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.act(self.upsample(x)))


def _conv(cin: int, cout: int, kernel_size: int, dilation: int = 1) -> nn.Module:
    return weight_norm(nn.Conv1d(cin, cout, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2))


class AMPBlock(nn.Module):
    """Residual units (act -> dilated conv -> act -> conv), one per dilation."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_conv(channels, channels, kernel_size) for _ in dilations)
        # The checkpoint interleaves them: activations 2i and 2i + 1 belong to unit i.
        self.activations = nn.ModuleList(AntiAliasedActivation(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGANVocoder(nn.Module):
    def __init__(self, cfg: BigVGANConfig = BigVGANConfig()) -> None:
        super().__init__()
        if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if cfg.upsample_initial_channel % 2 ** len(cfg.upsample_rates):
            raise ValueError(f"upsample_initial_channel must be divisible by 2^{len(cfg.upsample_rates)}")
        self.cfg = cfg
        self.conv_pre = _conv(cfg.num_mels, cfg.upsample_initial_channel, 7)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = cfg.upsample_initial_channel
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            up = weight_norm(nn.ConvTranspose1d(ch, ch // 2, kernel, rate, padding=(kernel - rate) // 2))
            # A one-element list per stage keeps the reference's `ups.<i>.0` key names.
            self.ups.append(nn.ModuleList([up]))
            ch //= 2
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(AMPBlock(ch, k, tuple(dilations)))
        self.activation_post = AntiAliasedActivation(ch)
        self.conv_post = _conv(ch, 1, 7)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.conv_pre(mel)
        n = len(self.cfg.resblock_kernel_sizes)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        return torch.tanh(self.conv_post(self.activation_post(x)))

    def fold_weight_norm(self) -> BigVGANVocoder:
        """Bake g * v / |v| into plain weights for inference; the state dict then has `.weight` keys."""
        for module in self.modules():
            if is_parametrized(module, "weight"):
                remove_parametrizations(module, "weight")
        return self
