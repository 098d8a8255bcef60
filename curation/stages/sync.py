"""Audio-visual sync for clips SyncNet did not decide: the weight-free judges of `ovi_pl.sync`.

Order of judges (the first that applies decides, and the row says which in `sync_method`; 2 to 4 are
`ovi_pl.sync.judge.judge_weight_free`, the chain training samples are judged by too):
1. `syncnet`: the SyncNet stage, when its weights are given and it found a face (it runs before this
   stage and sets the fields itself).
2. `mouth`: clips with a face track: lip-region motion against the speech envelope.
3. `onset`: clips without one: audio onsets against visual motion.
4. `none`: no judge could look (both judges off, or the clip has no usable signal).

Every clip gets `sync_method`, `sync_verified` (its judge's confidence cleared that judge's gate) and
the score `num_faces`; the mouth and onset judges add `sync_offset` and `sync_confidence` (SyncNet
writes its own `syncnet_offset` and `syncnet_confidence`). A verified offset beyond
`filters.sync.max_abs_offset` is rejected as `av_offset`; an unverified clip is kept, and counted in the
report, unless `filters.sync.reject_unverified` rejects it as `sync_unverified`.
"""
from __future__ import annotations

from typing import Any, ClassVar

from ..config import SyncFilter
from ..records import ClipRow
from ..stage import Row, Stage


class AVSyncStage(Stage):
    name: ClassVar[str] = "sync"

    def __init__(self, config: SyncFilter, detector: Any = None):
        self.config = config
        self._detector = detector  # tests may inject any ovi_pl.sync.faces.FaceDetector

    def setup(self) -> None:
        from ovi_pl.sync.faces import HaarFaceDetector

        if self._detector is None:
            # Faces under the mouth judge's min_face_size make no track it keeps: not looked for (the
            # cascade's smallest scales are its dearest; the sample clips' judgements are unchanged).
            self._detector = HaarFaceDetector(min_size=int(self.config.mouth.min_face_size))

    def process_batch(self, rows: list[Row]) -> list[Row]:
        self.setup()
        return [row if row.get("sync_method") == "syncnet" else self._judge(row) for row in rows]

    def _judge(self, row: ClipRow) -> ClipRow:
        from ovi_pl.media.audio import load_audio
        from ovi_pl.sync.judge import ChainSettings, gate_of, judge_weight_free
        from ovi_pl.sync.mouth import MouthSettings

        c, m = self.config, self.config.mouth
        settings = ChainSettings(
            mouth=MouthSettings(frame_width=m.frame_width, min_track_frames=m.min_track_frames,
                                detect_every=m.detect_every, search_every=m.search_every,
                                min_face_size=m.min_face_size) if m.enabled else None,
            mouth_min_confidence=m.min_confidence, onset_min_confidence=c.onset.min_confidence,
            onset_motion_width=c.onset.motion_width if c.onset.enabled else None, max_lag=c.max_lag_frames)
        verdict = judge_weight_free(row["mp4_path"], load_audio(row.get("flac_path") or row["mp4_path"]),
                                    self._detector, settings, frame_cache=row.get("frames_path"),
                                    num_frames=row.get("video", {}).get("num_frames"))
        method, verified, offset, confidence = verdict.method, verdict.verified, verdict.offset, verdict.confidence
        scores = {} if offset is None else {"sync_offset": float(offset), "sync_confidence": confidence}
        row = self.with_scores({**row, "sync_method": method, "sync_verified": bool(verified)},
                               num_faces=float(verdict.num_faces), **scores)
        gate = gate_of(settings, method)
        if verified and offset is not None and abs(offset) > c.max_abs_offset:
            return self.reject(row, "av_offset", f"{method} judge: offset {offset} frames at confidence "
                               f"{confidence:.2f} >= filters.sync.{method}.min_confidence {gate}; |offset| > "
                               f"filters.sync.max_abs_offset {c.max_abs_offset}")
        if not verified and c.reject_unverified:
            seen = "no judge could look at it" if method == "none" else (
                f"{method} judge confidence {confidence:.2f} < filters.sync.{method}.min_confidence {gate}")
            return self.reject(row, "sync_unverified", f"sync not verified ({seen}); set "
                               "filters.sync.reject_unverified: false to keep such clips, or give SyncNet weights")
        return row
