"""A whole clip through SyncNet: detect faces at 25 fps, track them, crop each track, score each track."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ovi_pl.media.frames import iter_frames

from .faces import FaceDetector, FaceTrack, detect_in_frames, track_faces
from .model import SyncNet
from .score import FPS, SAMPLE_RATE, SyncResult, score_track
from .video import track_crops


@dataclass(frozen=True)
class TrackSettings:
    detect_width: int = 640       # detection runs on frames downscaled to this width (boxes scaled back)
    detect_every: int = 1         # detect on every n-th frame; tracking interpolates between
    min_track_frames: int = 50
    max_gap_frames: int = 25
    iou_threshold: float = 0.5
    min_face_size: float = 48.0   # pixels at source resolution
    crop_scale: float = 0.4
    max_track_frames: int | None = None   # score at most this many frames per track (None: all)


@dataclass(frozen=True)
class TrackScore:
    track: int
    start_frame: int              # at 25 fps
    num_frames: int
    mean_face_size: float
    result: SyncResult

    def as_dict(self) -> dict:
        return {"track": self.track, "start_frame": self.start_frame, "num_frames": self.num_frames,
                "mean_face_size": round(self.mean_face_size, 1), "offset": self.result.offset,
                "confidence": round(self.result.confidence, 4), "min_dist": round(self.result.min_dist, 4)}


def detect_tracks(video: str | Path, detector: FaceDetector, settings: TrackSettings) -> list[FaceTrack]:
    per_frame = detect_in_frames(iter_frames(video, fps=FPS), detector, settings.detect_width, settings.detect_every)
    return track_faces(per_frame, settings.min_track_frames, max(settings.max_gap_frames, settings.detect_every),
                       settings.iou_threshold, settings.min_face_size)


def score_clip(video: str | Path, audio: np.ndarray, model: SyncNet, detector: FaceDetector,
               settings: TrackSettings = TrackSettings(), vshift: int = 15, device: str = "cpu") -> list[TrackScore]:
    """SyncNet offset/confidence for every face track of `video`; `audio` is its 16 kHz mono track."""
    tracks = detect_tracks(video, detector, settings)
    crops = track_crops(video, tracks, FPS, settings.crop_scale, settings.max_track_frames)
    scores = []
    for i, (track, frames) in enumerate(zip(tracks, crops)):
        start = int(track.frames[0])
        a0 = start * SAMPLE_RATE // FPS
        segment = audio[a0:a0 + len(frames) * SAMPLE_RATE // FPS]
        if len(frames) < 5 or len(segment) < 5 * SAMPLE_RATE // FPS:
            continue
        scores.append(TrackScore(i, start, len(frames), track.mean_size,
                                 score_track(model, frames, segment, vshift=vshift, device=device)))
    return scores
