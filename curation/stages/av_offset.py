"""AV offset for clips without faces: audio onsets cross-correlated with visual motion.

SyncNet needs a talking face. For everything else (a door slam, a drum hit, a ball bounce) the
sound's onsets should line up with bursts of motion. Both envelopes are sampled at the video
frame rate: audio onset strength is the spectral flux of a log-magnitude STFT with one hop per
video frame; motion is the mean absolute difference of consecutive downscaled grey frames. The
lag that maximises their normalised cross-correlation is the offset, in video frames, with
SyncNet's sign: positive when the sound comes before the picture. The confidence is the
correlation coefficient at that lag (about 0 when sound and motion are unrelated).

Only a confident misalignment is rejected: ambient audio without onsets gives a low confidence,
which is absence of evidence, not evidence of a bad sync.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..config import AVOffsetFilter
from ..stage import Row, Stage


@dataclass(frozen=True)
class OffsetEstimate:
    offset: int          # video frames; positive: audio before video (SyncNet's sign)
    confidence: float    # correlation coefficient at the best lag
    correlation: np.ndarray  # per lag, lags -max_lag..max_lag


def audio_onset_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Spectral flux per video frame: how much new energy appears, summed over frequencies."""
    hop = sample_rate / fps
    # One hop-sized window per frame: a click lands in exactly one frame's window.
    win = int(2 ** np.ceil(np.log2(hop)))
    window = np.hanning(win)
    padded = np.concatenate([np.zeros(win // 2), audio.astype(np.float64), np.zeros(win)])
    starts = (np.arange(num_frames) * hop).astype(int)
    frames = np.stack([padded[s:s + win] for s in starts]) * window
    logmag = np.log1p(1000.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(logmag, axis=0, prepend=logmag[:1]), 0).sum(axis=1)
    return flux


def motion_envelope(video: str | Path, width: int = 96) -> tuple[np.ndarray, float]:
    """Mean absolute grey-level change between consecutive frames (first frame 0), and the frame rate."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open video {video}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    values, previous = [], None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        grey = cv2.cvtColor(cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY).astype(np.float32)
        values.append(0.0 if previous is None else float(np.mean(np.abs(grey - previous))))
        previous = grey
    cap.release()
    if not values or not fps:
        raise RuntimeError(f"no frames decoded from {video}")
    return np.asarray(values), float(fps)


def estimate_offset(onsets: np.ndarray, motion: np.ndarray, max_lag: int) -> OffsetEstimate:
    """Best lag of audio against motion; both envelopes at the same rate and length."""
    n = min(len(onsets), len(motion))
    a, v = onsets[:n].astype(np.float64), motion[:n].astype(np.float64)
    a = (a - a.mean()) / (a.std() + 1e-9)
    v = (v - v.mean()) / (v.std() + 1e-9)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.zeros(len(lags))
    for k, lag in enumerate(lags):
        # audio delayed by `lag` frames: audio[t + lag] pairs with motion[t]
        if lag >= 0:
            x, y = a[lag:], v[:n - lag]
        else:
            x, y = a[:n + lag], v[-lag:]
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            corr[k] = float(np.corrcoef(x, y)[0, 1])
    best = int(np.argmax(corr))
    return OffsetEstimate(offset=-int(lags[best]), confidence=float(corr[best]), correlation=corr)


def clip_offset(video: str | Path, audio: np.ndarray, sample_rate: int = 16000, max_lag: int = 15,
                motion_width: int = 96) -> OffsetEstimate:
    """Offset estimate of one clip from its video file and its mono audio."""
    motion, fps = motion_envelope(video, motion_width)
    onsets = audio_onset_envelope(audio, sample_rate, fps, len(motion))
    return estimate_offset(onsets, motion, max_lag)


class AVOffsetStage(Stage):
    name: ClassVar[str] = "av_offset"

    def __init__(self, config: AVOffsetFilter):
        self.config = config

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ovi_pl.media.audio import load_audio

        c = self.config
        out = []
        for row in rows:
            scores = row.get("scores", {})
            if c.apply_to == "no_face" and scores.get("num_faces", 0) > 0:
                out.append(row)
                continue
            est = clip_offset(row["mp4_path"], load_audio(row.get("flac_path") or row["mp4_path"]),
                              max_lag=c.max_lag_frames, motion_width=c.motion_width)
            values = dict(av_offset=float(est.offset), av_offset_confidence=round(est.confidence, 4))
            if est.confidence >= c.min_confidence and abs(est.offset) > c.max_abs_offset:
                out.append(self.reject(row, "av_offset", f"audio onsets vs motion: offset {est.offset} frames at "
                                       f"confidence {est.confidence:.2f} >= filters.av_offset.min_confidence "
                                       f"{c.min_confidence}; |offset| > max_abs_offset {c.max_abs_offset}", **values))
            else:
                out.append(self.with_scores(row, **values))
        return out
