"""Decoding a clip at SyncNet's 25 fps and cutting 224x224 face crops along a track."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import medfilt

from ovi_pl.media.frames import iter_frames

from .faces import FaceTrack

CROP_SIZE = 224
_PAD_VALUE = 110  # grey border where a crop runs off the frame, as in the reference pipeline


def crop_window(track: FaceTrack, crop_scale: float = 0.4, smooth: int = 13) -> np.ndarray:
    """[T, 3] smoothed (centre x, centre y, half size) per track frame; median filtering steadies the crop."""
    b = track.boxes
    half = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    k = min(smooth, len(b) if len(b) % 2 else len(b) - 1)
    if k >= 3:
        half, cx, cy = medfilt(half, k), medfilt(cx, k), medfilt(cy, k)
    return np.stack([cx, cy, half], axis=1)


def crop_face(frame: np.ndarray, cx: float, cy: float, half: float, crop_scale: float = 0.4) -> np.ndarray:
    """The 224x224 crop SyncNet expects: the face box widened by `crop_scale` and extended downwards,
    so the mouth sits in the lower middle of the crop."""
    import cv2

    pad = int(half * (1 + 2 * crop_scale))
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(_PAD_VALUE,) * 3)
    my, mx = cy + pad, cx + pad
    region = padded[int(my - half):int(my + half * (1 + 2 * crop_scale)),
                    int(mx - half * (1 + crop_scale)):int(mx + half * (1 + crop_scale))]
    if region.size == 0:
        region = np.full((CROP_SIZE, CROP_SIZE, 3), _PAD_VALUE, np.uint8)
    return cv2.resize(region, (CROP_SIZE, CROP_SIZE))


def track_crops(path: str | Path, tracks: list[FaceTrack], fps: float = 25.0, crop_scale: float = 0.4,
                max_frames: int | None = None) -> list[np.ndarray]:
    """One [T, 224, 224, 3] uint8 array per track, decoding the clip once at full resolution."""
    windows = [crop_window(t, crop_scale) for t in tracks]
    firsts = [int(t.frames[0]) for t in tracks]
    lasts = [int(t.frames[-1]) if max_frames is None else min(int(t.frames[-1]), firsts[i] + max_frames - 1)
             for i, t in enumerate(tracks)]
    out: list[list[np.ndarray]] = [[] for _ in tracks]
    end = max(lasts, default=-1)
    for index, frame in enumerate(iter_frames(path, fps=fps)):
        if index > end:
            break
        for i, window in enumerate(windows):
            if firsts[i] <= index <= lasts[i]:
                cx, cy, half = window[index - firsts[i]]
                out[i].append(crop_face(frame, cx, cy, half, crop_scale))
    return [np.stack(c) if c else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8) for c in out]
