"""Log-mel front end of MMAudio's 16 kHz audio VAE.

Matches the reference (Ovi's mmaudio mel converter): reflect padding of (n_fft - hop) / 2 on both
sides and an uncentred STFT, so `samples // hop` frames come out; magnitude with a 1e-9 floor
inside the square root; a Slaney-style mel filterbank (librosa's default, re-derived here so the
front end needs no librosa); log10 of the mel energies clamped at 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8_000.0
    log_floor: float = 1e-5


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3.0)
    log_region = hz >= 1000.0
    mel[log_region] = 15.0 + np.log(hz[log_region] / 1000.0) / (math.log(6.4) / 27.0)
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3.0)
    log_region = mel >= 15.0
    hz[log_region] = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel[log_region] - 15.0))
    return hz


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, area-normalised (librosa's norm='slaney')."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_min, mel_max = _hz_to_slaney_mel(np.array([f_min, f_max]))
    edges_hz = _slaney_mel_to_hz(np.linspace(mel_min, mel_max, n_mels + 2))
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - fft_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


class LogMelSpectrogram(nn.Module):
    """waveform [B, samples] in [-1, 1] -> log10 mel [B, n_mels, samples // hop]."""

    def __init__(self, cfg: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        # Derived from the config, so not part of any checkpoint.
        basis = slaney_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("mel_basis", basis, persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        pad = (self.cfg.n_fft - self.cfg.hop_length) // 2
        return (num_samples + 2 * pad - self.cfg.n_fft) // self.cfg.hop_length + 1

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be [B, samples], got {tuple(waveform.shape)}")
        cfg = self.cfg
        pad = (cfg.n_fft - cfg.hop_length) // 2
        if waveform.shape[1] <= pad:
            raise ValueError(f"need more than {pad} samples for reflect padding, got {waveform.shape[1]}")
        x = waveform.float().clamp(-1.0, 1.0)
        x = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=self.window,
            center=False, normalized=False, onesided=True, return_complex=True,
        )
        magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)
        mel = torch.matmul(self.mel_basis, magnitude)
        return torch.log10(mel.clamp(min=cfg.log_floor))
