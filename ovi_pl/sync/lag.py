"""The lag between two per-frame signals of one clip, and how far its peak stands out of noise.

Both weight-free sync judges (`onset`, `mouth`) reduce a clip to an audio envelope and a visual
envelope at the video frame rate and look for the lag that best lines them up. Offsets follow
SyncNet's sign: positive when the sound comes before the picture (audio delayed by d frames
gives -d).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LagEstimate:
    offset: int               # video frames; positive: audio before video
    confidence: float         # the judge's confidence (its own scale; see each judge)


def audio_windows(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int, win: int,
                  centre: bool) -> np.ndarray:
    """[num_frames, win] windows of `audio`, the i-th centred on video frame i's start (`centre`: on its
    middle), zero past both ends, so audio a little shorter than the picture still gives every frame one."""
    hop = sample_rate / fps
    starts = (np.arange(num_frames) * hop + (hop / 2 if centre else 0)).astype(int)
    padded = np.zeros(max(len(audio), int(starts[-1]) if num_frames else 0) + 2 * win)
    padded[win // 2:win // 2 + len(audio)] = audio
    return np.stack([padded[s:s + win] for s in starts]) if num_frames else np.zeros((0, win))


def standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    spread = x.std()
    return (x - x.mean()) / spread if spread > 0 else np.zeros_like(x)


def lag_correlation(audio: np.ndarray, visual: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson correlation of audio[t + lag] with visual[t] for lag = -max_lag .. max_lag (0 where undefined)."""
    n = min(len(audio), len(visual))
    a, v = standardise(audio[:n]), standardise(visual[:n])
    out = np.zeros(2 * max_lag + 1)
    for k, lag in enumerate(range(-max_lag, max_lag + 1)):
        x, y = (a[lag:], v[:n - lag]) if lag >= 0 else (a[:n + lag], v[-lag:])
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            out[k] = float(np.corrcoef(x, y)[0, 1])
    return out


def circular_null(audio: np.ndarray, visual: np.ndarray, min_shift: int) -> np.ndarray:
    """Correlations of the visual signal with the audio rotated by every shift of at least `min_shift`
    frames either way: what the lag curve's values look like when sound and picture are unrelated but
    keep their own rhythm. Empty when the signals are shorter than 2 * min_shift + 1."""
    n = min(len(audio), len(visual))
    a, v = standardise(audio[:n]), standardise(visual[:n])
    shifts = range(min_shift, n - min_shift + 1)
    return np.asarray([float(np.mean(np.roll(a, s) * v)) for s in shifts])


def best_lag(correlation: np.ndarray) -> tuple[int, float]:
    """(offset in SyncNet's sign, peak value) of a lag curve from `lag_correlation`."""
    max_lag = (len(correlation) - 1) // 2
    k = int(np.argmax(correlation))
    return -(k - max_lag), float(correlation[k])
