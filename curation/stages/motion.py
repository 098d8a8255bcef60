"""Motion filter: mean Farneback optical flow on a few downscaled frame pairs; static clips are dropped."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..config import MotionFilter
from ..stage import Row, Stage


def motion_score(path: str, num_pairs: int, resize_width: int) -> float:
    """Mean flow magnitude (pixels per frame at `resize_width`) over `num_pairs` evenly spaced consecutive pairs."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total < 2:
            raise RuntimeError(f"{path} has {total} frames; motion needs at least 2")
        firsts = sorted({int(i) for i in np.linspace(0, total - 2, num_pairs)})
        wanted = set(firsts) | {i + 1 for i in firsts}
        frames: dict[int, np.ndarray] = {}
        # Sequential decoding: seeking in H.264 decodes from the keyframe anyway and is less exact.
        for index in range(max(wanted) + 1):
            ok, frame = cap.read()
            if not ok:
                break
            if index in wanted:
                h, w = frame.shape[:2]
                size = (resize_width, max(2, round(h * resize_width / w)))
                frames[index] = cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    finally:
        cap.release()
    mags = []
    for i in firsts:
        if i in frames and i + 1 in frames:
            flow = cv2.calcOpticalFlowFarneback(frames[i], frames[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    if not mags:
        raise RuntimeError(f"could not decode any frame pair of {path}")
    return float(np.mean(mags))


class MotionFilterStage(Stage):
    name: ClassVar[str] = "motion"

    def __init__(self, config: MotionFilter):
        self.config = config

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        c = self.config
        for row in rows:
            score = round(motion_score(row["mp4_path"], c.num_pairs, c.resize_width), 4)
            if score < c.min_motion:
                out.append(self.reject(row, "static", f"motion {score:.3f} px/frame < filters.motion.min_motion "
                                       f"{c.min_motion}", motion=score))
            else:
                out.append(self.with_scores(row, motion=score))
        return out
