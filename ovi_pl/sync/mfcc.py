"""MFCCs as SyncNet was trained on them: python_speech_features' `mfcc` defaults, re-implemented.

13 cepstra, 25 ms rectangular frames every 10 ms (100 per second: 4 per 25 fps video frame),
512-point FFT, 26 mel filters over 0-8 kHz, pre-emphasis 0.97, lifter 22, and c0 replaced by the
log frame energy. The input is int16-scaled audio (what scipy's wavfile gives); features are logs,
so the scale only shifts c0, but the network's batch norms saw that scale.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dct

SAMPLE_RATE = 16000
_WIN, _STEP, _NFFT, _NFILT, _NCEP, _LIFTER, _PREEMPH = 400, 160, 512, 26, 13, 22, 0.97


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _filterbank(sample_rate: int) -> np.ndarray:
    edges = _hz(np.linspace(_mel(0.0), _mel(sample_rate / 2), _NFILT + 2))
    bins = np.floor((_NFFT + 1) * edges / sample_rate).astype(int)
    bank = np.zeros((_NFILT, _NFFT // 2 + 1))
    for j in range(_NFILT):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        bank[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        bank[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return bank


def mfcc(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[13, T] MFCCs (T = 100 per second) of mono int16-scaled samples."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"SyncNet MFCCs need {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample first")
    x = np.asarray(samples, dtype=np.float64)
    x = np.append(x[:1], x[1:] - _PREEMPH * x[:-1])
    count = 1 if len(x) <= _WIN else 1 + int(np.ceil((len(x) - _WIN) / _STEP))
    x = np.concatenate([x, np.zeros(max(0, (count - 1) * _STEP + _WIN - len(x)))])
    index = np.arange(_WIN)[None, :] + _STEP * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(x[index], _NFFT)) ** 2 / _NFFT
    eps = np.finfo(float).eps
    energy = np.maximum(power.sum(axis=1), eps)
    feats = np.log(np.maximum(power @ _filterbank(sample_rate).T, eps))
    ceps = dct(feats, type=2, axis=1, norm="ortho")[:, :_NCEP]
    ceps *= 1 + (_LIFTER / 2.0) * np.sin(np.pi * np.arange(_NCEP) / _LIFTER)
    ceps[:, 0] = np.log(energy)
    return ceps.T.astype(np.float32)
