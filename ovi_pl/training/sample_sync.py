"""Audio-visual sync of a generated sample, judged as curation judges its clips (ovi_pl/sync/judge.py).

The first judge that can look decides: SyncNet (only when its weights are given, on a face track),
else the weight-free mouth judge (a face track's mouth motion against the speech envelope), else the
onset judge (frame motion against audio onsets), which looks at any clip. Offsets are in frames of
the clip, positive when the audio comes first; confidences are each judge's own scale, so they are
compared within one method only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovi_pl.media.audio import load_audio
from ovi_pl.sync.faces import FaceDetector, HaarFaceDetector
from ovi_pl.sync.model import SyncNet
from ovi_pl.sync.judge import ChainSettings, judge_weight_free
from ovi_pl.sync.mouth import MouthSettings

SYNC_METHODS = ("syncnet", "mouth", "onset")


@dataclass(frozen=True)
class SampleSync:
    method: str  # one of SYNC_METHODS
    offset: int
    confidence: float


@dataclass
class SampleSyncJudge:
    """max_lag: the largest offset looked for, in frames. syncnet: a loaded SyncNet, or None."""

    max_lag: int = 15
    syncnet: SyncNet | None = None
    detector: FaceDetector | None = None

    def __post_init__(self) -> None:
        if self.detector is None:
            self.detector = HaarFaceDetector(min_size=int(MouthSettings.min_face_size))

    def __call__(self, clip: str | Path) -> SampleSync:
        audio = load_audio(clip)
        if self.syncnet is not None:
            from ovi_pl.sync.clip import score_clip

            tracks = score_clip(clip, audio, self.syncnet, self.detector)
            if tracks:
                best = max(tracks, key=lambda t: t.result.confidence).result
                return SampleSync("syncnet", int(best.offset), float(best.confidence))
        verdict = judge_weight_free(clip, audio, self.detector, ChainSettings(max_lag=self.max_lag))
        # Both judges are on, so the onset judge looks whenever the mouth judge cannot: never `none`.
        assert verdict.offset is not None and verdict.confidence is not None
        return SampleSync(verdict.method, verdict.offset, float(verdict.confidence))
