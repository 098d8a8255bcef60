"""Audio-visual sync metrics through a pluggable scorer.

Sync-C (confidence, higher is better) and Sync-D (minimum audio-visual embedding distance, lower
is better) are SyncNet's scores (DESIGN.md section 3). `SyncNetScorer` runs the project's SyncNet
(ovi_pl/sync/, the one the curation filter uses) on a clip's most confident face track. Any
other callable from an mp4 path to a `SyncScore` can be named on the command line as
`module:attribute` (a function, or a class instantiated with no arguments).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ovi_pl.sync.faces import DetectorKind


@dataclass(frozen=True)
class SyncScore:
    offset: int  # frames; audio leads when positive (SyncNet's vshift convention)
    confidence: float  # Sync-C: median(dist) - min(dist) over offsets
    distance: float  # Sync-D: min over offsets of the mean distance


SyncScorer = Callable[[Path], SyncScore]


def load_sync_scorer(spec: str) -> SyncScorer:
    """`package.module:name`: a function scoring one clip, or a class instantiated once with no arguments."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"sync scorer {spec!r}: give it as package.module:callable")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"sync scorer {spec!r} cannot be imported: {err}") from err
    if isinstance(target, type):
        target = target()
    if not callable(target):
        raise ValueError(f"sync scorer {spec!r} is not callable")
    return target


class SyncNetScorer:
    """Sync-C/D of the clip's most confident face track (the speaker's, as in the curation filter).

    weights: a local `syncnet_v2.model` state dict. Faces come from `detector` (haar, or yunet / s3fd
    with local `detector_weights`, as filters.syncnet in curation). A clip without a face track of
    `min_track_frames` at 25 fps scores NaN (offset 0), so folder means skip it.
    """

    def __init__(self, weights: str | Path, detector: DetectorKind = "haar", detector_weights: str | Path | None = None,
                 min_track_frames: int = 25, vshift: int = 15, device: str = "cpu") -> None:
        from ovi_pl.sync.clip import TrackSettings
        from ovi_pl.sync.faces import load_face_detector
        from ovi_pl.sync.model import load_syncnet

        self.detector = load_face_detector(detector, detector_weights, device)
        self.model = load_syncnet(weights, device)
        self.settings = TrackSettings(min_track_frames=min_track_frames)
        self.vshift, self.device = vshift, device

    def __call__(self, path: Path) -> SyncScore:
        from ovi_pl.media.audio import load_audio
        from ovi_pl.sync.clip import score_clip

        tracks = score_clip(path, load_audio(path), self.model, self.detector, self.settings, self.vshift, self.device)
        if not tracks:
            return SyncScore(offset=0, confidence=float("nan"), distance=float("nan"))
        best = max(tracks, key=lambda t: t.result.confidence).result
        return SyncScore(offset=best.offset, confidence=best.confidence, distance=best.min_dist)
