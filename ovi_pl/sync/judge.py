"""The weight-free judge chain: the mouth judge for clips with a face track, else the onset judge.

Curation's `sync` stage (for clips SyncNet did not decide) and the training samples' sync metric
(`ovi_pl/training/sample_sync.py`, after SyncNet when its weights are given) judge clips the same way,
so the chain lives here once. The first judge that can look decides, and the verdict says which
(`method`: mouth, onset, or none when both are off) and whether its confidence cleared that judge's gate.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from .faces import FaceDetector
from .mouth import MouthSettings, judge_clip
from .onset import clip_onset_estimate

JudgeMethod = Literal["mouth", "onset", "none"]

# The default gates (curation: filters.sync.mouth/onset.min_confidence).
# Mouth: z-score of the lip-motion/speech-envelope peak over rotated audio (ovi_pl/sync/mouth.py): the 95th
# percentile of what the sample clips score with unrelated sound (another clip's, or their own played
# backwards), measured by bench/sync_accuracy.py, so about 1 in 20 unrelated tracks passes as verified.
MOUTH_MIN_CONFIDENCE = 4.3
# Onset: correlation of audio onsets with visual motion (ovi_pl/sync/onset.py). Measured peaks: 0.94 for
# flash-and-click clips, up to 0.37 at a wrong lag for in-sync speech and 0.38 for a steady tone over
# moving test patterns (no onsets at all); 0.6 verifies only the former.
ONSET_MIN_CONFIDENCE = 0.6


@dataclass(frozen=True)
class ChainSettings:
    """Which judges look, with their gates. mouth or onset_motion_width None: that judge is off."""

    mouth: MouthSettings | None = MouthSettings()   # its max_lag is replaced by this chain's
    mouth_min_confidence: float = MOUTH_MIN_CONFIDENCE
    onset_motion_width: int | None = 96     # frames are scaled to this width for the motion envelope
    onset_min_confidence: float = ONSET_MIN_CONFIDENCE
    max_lag: int = 15                       # the largest offset looked for, in frames, by both judges


@dataclass(frozen=True)
class SyncVerdict:
    method: JudgeMethod
    offset: int | None          # frames at the clip's rate, positive: audio first; None when no judge looked
    confidence: float | None    # the deciding judge's own scale
    verified: bool              # the confidence cleared the deciding judge's gate
    num_faces: int              # face tracks the mouth judge found (0 when it was off)


def gate_of(settings: ChainSettings, method: JudgeMethod) -> float | None:
    """The confidence a verdict of `method` had to reach to be verified (None for `none`)."""
    return {"mouth": settings.mouth_min_confidence, "onset": settings.onset_min_confidence}.get(method)


def judge_weight_free(clip: str | Path, audio: np.ndarray, detector: FaceDetector,
                      settings: ChainSettings = ChainSettings(), frame_cache: str | Path | None = None,
                      num_frames: int | None = None) -> SyncVerdict:
    """Judge one clip file with its mono 16 kHz audio. frame_cache / num_frames: the clip's small frame copy
    and frame count where the caller has them (the onset judge decodes the cache instead when it can stand
    in, `ovi_pl.media.frames.frame_source`)."""
    from ovi_pl.media.frames import frame_source

    if settings.mouth is not None:
        # The clip itself, not its frame cache: on the sample clips the Haar cascade lost a borderline face
        # in the cache's MJPEG frames that it finds in the H.264 ones (bench/RESULTS.md).
        judged = judge_clip(clip, audio, detector, settings=replace(settings.mouth, max_lag=settings.max_lag))
        if judged is not None:
            return SyncVerdict("mouth", judged.offset, judged.confidence,
                               judged.confidence >= settings.mouth_min_confidence, judged.num_faces)
    if settings.onset_motion_width is not None:
        video, info = frame_source(clip, frame_cache, width=settings.onset_motion_width, num_frames=num_frames)
        est = clip_onset_estimate(video, audio, max_lag=settings.max_lag, motion_width=settings.onset_motion_width,
                                  info=info)
        return SyncVerdict("onset", est.offset, round(est.confidence, 4),
                           est.confidence >= settings.onset_min_confidence, 0)
    return SyncVerdict("none", None, None, False, 0)
