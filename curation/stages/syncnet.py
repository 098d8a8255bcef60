"""AV-sync filter: SyncNet on every face track; the best-synced track decides (DESIGN.md section 3).

Paper rule: keep |offset| <= 3 frames and confidence > 1.5. In a clip with several faces the
listeners' tracks are out of sync by nature (their lips do not follow the voice), so the clip is
judged by its most confident track: the speaker. Clips without a face track are kept (scored
num_faces = 0) or rejected, by config; the `sync` stage's weight-free judges cover them. A clip with a
face track gets `sync_method: syncnet` and `sync_verified` (confidence above the gate).

Faces come from OpenCV's Haar cascade by default (shipped with opencv-python, offline), from a
local YuNet ONNX model (ovi_pl/sync/faces.py) or from local S3FD weights
(ovi_pl/sync/s3fd.py). Off by default: SyncNet's weights (`syncnet_v2.model`) are a local file
the user provides.
"""
from __future__ import annotations

from typing import Any, ClassVar

from ..config import SyncNetFilter
from ..stage import Resources, Row, Stage

class SyncNetFilterStage(Stage):
    name: ClassVar[str] = "syncnet"

    def __init__(self, config: SyncNetFilter, detector: Any = None):
        self.config = config
        self.batch_size = config.batch_size  # type: ignore[misc]
        self.resources = Resources(cpus=1.0, gpus=config.gpus_per_actor, actors=config.actors)  # type: ignore[misc]
        self._detector = detector  # tests and callers may inject any FaceDetector

    def setup(self) -> None:
        import torch

        from ovi_pl.sync.clip import TrackSettings
        from ovi_pl.sync.faces import load_face_detector
        from ovi_pl.sync.model import load_syncnet

        c = self.config
        if c.weights is None:
            raise ValueError("filters.syncnet.weights is not set: give the path of a local syncnet_v2.model")
        self.device = "cuda" if c.gpus_per_actor and torch.cuda.is_available() else "cpu"
        self.model = load_syncnet(c.weights, self.device)
        if self._detector is None:
            if c.detector_weights is None and c.detector != "haar":
                raise ValueError(f"filters.syncnet.detector_weights is not set: detector {c.detector} needs a local "
                                 "model file")
            self._detector = load_face_detector(c.detector, c.detector_weights, device=self.device)
        self.settings = TrackSettings(c.detect_width, c.detect_every, c.min_track_frames, c.max_gap_frames,
                                      min_face_size=c.min_face_size, crop_scale=c.crop_scale,
                                      max_track_frames=c.max_track_frames)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ovi_pl.media.audio import load_audio
        from ovi_pl.sync.clip import score_clip

        if not hasattr(self, "model"):
            self.setup()
        c = self.config
        out = []
        for row in rows:
            audio = load_audio(row.get("flac_path") or row["mp4_path"])
            tracks = score_clip(row["mp4_path"], audio, self.model, self._detector, self.settings, c.vshift,
                                self.device)
            row = {**row, "syncnet_tracks": [t.as_dict() for t in tracks]}
            if not tracks:
                row = self.with_scores(row, num_faces=0.0)
                out.append(row if c.no_face == "keep" else
                           self.reject(row, "no_face", "no face track of >= filters.syncnet.min_track_frames "
                                       f"({c.min_track_frames}) frames at 25 fps"))
                continue
            best = max(tracks, key=lambda t: t.result.confidence)
            scores = dict(num_faces=float(len(tracks)), syncnet_offset=float(best.result.offset),
                          syncnet_confidence=round(best.result.confidence, 4))
            verified = best.result.confidence > c.min_confidence
            row = {**row, "sync_method": "syncnet", "sync_verified": verified}
            if abs(best.result.offset) > c.max_abs_offset:
                out.append(self.reject(row, "av_offset", f"SyncNet offset {best.result.offset} frames (track "
                                       f"{best.track}), |offset| > filters.syncnet.max_abs_offset {c.max_abs_offset}",
                                       **scores))
            elif best.result.confidence <= c.min_confidence:
                out.append(self.reject(row, "low_sync_confidence", f"SyncNet confidence {best.result.confidence:.2f} "
                                       f"<= filters.syncnet.min_confidence {c.min_confidence}", **scores))
            else:
                out.append(self.with_scores(row, **scores))
        return out
