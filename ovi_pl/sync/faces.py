"""Face detectors behind one small interface, and IoU tracking of detections into face tracks.

- `HaarFaceDetector` (default): OpenCV's frontal-face Haar cascade, which opencv-python 4.x ships,
  so it runs offline with nothing to download. Fast; misses profiles and small faces.
- `YuNetDetector`: OpenCV's `cv2.FaceDetectorYN` with a local YuNet ONNX file (opencv_zoo), stronger.
- `StaticBoxes`: fixed boxes, for tests and for footage whose face layout is known.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def size(self) -> float:
        return max(self.x2 - self.x1, self.y2 - self.y1)


class FaceDetector(Protocol):
    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        """Faces in one BGR uint8 frame, in that frame's pixel coordinates. `sizes` (smallest, largest):
        faces outside that range need not be looked for (a detector that cannot narrow its search ignores it)."""
        ...


class StaticBoxes:
    """Returns the same boxes on every frame (coordinates in the frame it is given)."""

    def __init__(self, boxes: list[Box]):
        self.boxes = list(boxes)

    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        return list(self.boxes)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade from the opencv-python package."""

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", min_neighbors: int = 5,
                 min_size: int = 0):
        """min_size: faces smaller than this many pixels are not looked for. The cascade's smallest scales
        cost most (the whole frame, window by window), so a caller that drops small faces anyway saves
        there (0: from the cascade's own 24 px)."""
        import cv2

        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / cascade))
        if self._cascade.empty():
            raise FileNotFoundError(f"opencv-python ships no {cascade} in {cv2.data.haarcascades}; use opencv-python 4.x")
        self._min_neighbors = min_neighbors
        self._min_size = (min_size, min_size)

    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        import cv2

        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        smallest, largest = self._min_size, (0, 0)  # (0, 0): no upper bound
        if sizes is not None:
            low = max(self._min_size[0], int(sizes[0]))
            smallest, largest = (low, low), (int(np.ceil(sizes[1])),) * 2
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self._min_neighbors,
                                               minSize=smallest, maxSize=largest)
        return [Box(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in found]


class YuNetDetector:
    """cv2.FaceDetectorYN with a local ONNX model (face_detection_yunet_2023mar.onnx from opencv_zoo)."""

    def __init__(self, model_path: str | Path, score_threshold: float = 0.8, nms_threshold: float = 0.3):
        import cv2

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model {model_path} does not exist; point filters.syncnet.detector_weights "
                                    "at a local face_detection_yunet_2023mar.onnx")
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, nms_threshold)

    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        h, w = frame_bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(frame_bgr)
        if faces is None:
            return []
        return [Box(float(f[0]), float(f[1]), float(f[0] + f[2]), float(f[1] + f[3]), float(f[-1])) for f in faces]


DetectorKind = Literal["haar", "yunet", "s3fd"]


def load_face_detector(kind: DetectorKind = "haar", weights: str | Path | None = None,
                       device: str = "cpu") -> FaceDetector:
    """The named detector: haar (no file), yunet (a local YuNet ONNX) or s3fd (local S3FD weights)."""
    if kind == "haar":
        return HaarFaceDetector()
    if kind not in ("yunet", "s3fd"):
        raise ValueError(f"face detector {kind!r}: choose haar, yunet or s3fd")
    if weights is None:
        wanted = "face_detection_yunet_2023mar.onnx" if kind == "yunet" else "S3FD state dict (sfd_face.pth)"
        raise ValueError(f"face detector {kind} needs its weights: give the path of a local {wanted}")
    if kind == "yunet":
        return YuNetDetector(weights)
    from .s3fd import S3FDDetector

    return S3FDDetector(weights, device=device)


def detect_in_frames(frames: Iterable[np.ndarray], detector: FaceDetector, detect_width: int | None = None,
                     every: int = 1, search_every: int | None = None) -> list[list[Box]]:
    """Detections per frame, in the frames' own coordinates: on every `every`-th frame (the others get none,
    for tracking to interpolate), on a copy downscaled to `detect_width` when the frame is wider.

    With `search_every` (a multiple of `every`), only every `search_every`-th frame is searched for faces
    of every size; the detect frames between look for faces of the sizes seen in the last two such
    intervals (0.7x the smallest to 1.5x the largest), and for none when none were seen. A detector's
    smallest sizes cost it most, and a face that enters is found at the next full search.
    """
    import cv2

    if search_every is not None and search_every % every:
        raise ValueError(f"search_every {search_every} must be a multiple of every {every}")
    found: list[list[Box]] = []
    seen: list[tuple[int, float]] = []  # (frame, face size) over the last two search intervals
    for index, frame in enumerate(frames):
        full_search = search_every is None or index % search_every == 0
        if index % every or not (full_search or seen):
            found.append([])
            continue
        scale = min(1.0, detect_width / frame.shape[1]) if detect_width else 1.0
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        sizes = None if full_search else (0.7 * min(s for _, s in seen), 1.5 * max(s for _, s in seen))
        boxes = detector.detect(small, sizes)
        if search_every is not None:
            seen = [(f, s) for f, s in seen if index - f < 2 * search_every] + [(index, b.size) for b in boxes]
        found.append([Box(b.x1 / scale, b.y1 / scale, b.x2 / scale, b.y2 / scale, b.score) for b in boxes])
    return found


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class FaceTrack:
    """One face followed over consecutive frames; `boxes[i]` belongs to `frames[i]` (gaps interpolated)."""

    frames: np.ndarray                 # [T] frame indices, consecutive
    boxes: np.ndarray                  # [T, 4] x1 y1 x2 y2
    detections: list[tuple[int, Box]] = field(default_factory=list, repr=False)

    @property
    def mean_size(self) -> float:
        return float(np.mean(np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])))

    def __len__(self) -> int:
        return len(self.frames)

    def within(self, start: int, stop: int) -> FaceTrack:
        """The part of the track on frames start <= i < stop."""
        keep = (self.frames >= start) & (self.frames < stop)
        return FaceTrack(self.frames[keep], self.boxes[keep],
                         [(i, box) for i, box in self.detections if start <= i < stop])


def track_faces(detections: list[list[Box]], min_track: int, max_gap: int = 25, iou_threshold: float = 0.5,
                min_face_size: float = 0.0) -> list[FaceTrack]:
    """Greedy IoU linking of per-frame detections into tracks, as the SyncNet reference pipeline does.

    A detection joins the open track whose last box overlaps it by more than `iou_threshold`, if that
    box is at most `max_gap` frames old; missing frames inside a track are linearly interpolated.
    Tracks shorter than `min_track` frames or with mean box size under `min_face_size` are dropped.
    """
    open_tracks: list[list[tuple[int, Box]]] = []
    for frame, boxes in enumerate(detections):
        taken: set[int] = set()
        for box in sorted(boxes, key=lambda b: -b.score):
            best, best_iou = None, iou_threshold
            for t, track in enumerate(open_tracks):
                last_frame, last_box = track[-1]
                if t in taken or last_frame == frame or frame - last_frame > max_gap:
                    continue
                overlap = iou(box, last_box)
                if overlap > best_iou:
                    best, best_iou = t, overlap
            if best is None:
                open_tracks.append([(frame, box)])
                taken.add(len(open_tracks) - 1)
            else:
                open_tracks[best].append((frame, box))
                taken.add(best)
    tracks = []
    for track in open_tracks:
        frames = np.array([f for f, _ in track])
        coords = np.array([[b.x1, b.y1, b.x2, b.y2] for _, b in track], dtype=np.float64)
        span = np.arange(frames[0], frames[-1] + 1)
        if len(span) < min_track:
            continue
        boxes = np.stack([np.interp(span, frames, coords[:, k]) for k in range(4)], axis=1)
        result = FaceTrack(span, boxes, track)
        if result.mean_size >= min_face_size:
            tracks.append(result)
    return tracks
