"""The onset judge, for clips without a face: audio onsets cross-correlated with visual motion.

SyncNet and the mouth judge need a talking face. For everything else (a door slam, a drum hit, a
ball bounce) the sound's onsets should line up with bursts of motion. Both envelopes are sampled at
the video frame rate: audio onset strength is the spectral flux of a log-magnitude STFT with one hop
per video frame; motion is the mean absolute difference of consecutive downscaled grey frames. The
lag that maximises their correlation is the offset; the confidence is the correlation coefficient at
that lag (about 0 when sound and motion are unrelated).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .lag import LagEstimate, audio_windows, best_lag, lag_correlation

if TYPE_CHECKING:
    from ovi_pl.media.frames import VideoInfo


def audio_onset_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Spectral flux per video frame: how much new energy appears, summed over frequencies."""
    hop = sample_rate / fps
    # One hop-sized window per frame: a click lands in exactly one frame's window.
    win = int(2 ** np.ceil(np.log2(hop)))
    window = np.hanning(win)
    frames = audio_windows(np.asarray(audio, np.float64), sample_rate, fps, num_frames, win, centre=False) * window
    logmag = np.log1p(1000.0 * np.abs(np.fft.rfft(frames, axis=1)))
    return np.maximum(np.diff(logmag, axis=0, prepend=logmag[:1]), 0).sum(axis=1)


def frame_motion(grey_frames: np.ndarray) -> np.ndarray:
    """Mean absolute grey-level change between consecutive frames [T, H, W] (the first frame scores 0)."""
    frames = grey_frames.astype(np.float32)
    return np.concatenate([[0.0], np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))])


def onset_estimate(onsets: np.ndarray, motion: np.ndarray, max_lag: int) -> LagEstimate:
    """Best lag of audio onsets against motion; both envelopes at the same rate."""
    offset, peak = best_lag(lag_correlation(onsets, motion, max_lag))
    return LagEstimate(offset=offset, confidence=peak)


def clip_onset_estimate(video: str | Path, audio: np.ndarray, sample_rate: int = 16000, max_lag: int = 15,
                        motion_width: int = 96, info: VideoInfo | None = None) -> LagEstimate:
    """The onset judge on one clip file (or its frame cache) and its mono audio. info: the file's
    `video_info`, where the caller has it."""
    from ovi_pl.media.frames import read_frames, video_info

    info = info or video_info(video)
    fps = info.fps
    if not fps:
        raise ValueError(f"{video}: the video stream declares no frame rate")
    motion = frame_motion(read_frames(video, width=motion_width, pix_fmt="gray", info=info))
    return onset_estimate(audio_onset_envelope(audio, sample_rate, fps, len(motion)), motion, max_lag)
