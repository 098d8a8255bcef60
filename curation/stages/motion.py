"""Motion filter: mean Farneback optical flow on a few downscaled frame pairs; static clips are dropped."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ovi_pl.media.frames import VideoInfo, frame_count, frame_source, pick_frames, video_info

from ..config import MotionFilter
from ..stage import Row, Stage


def motion_score(path: str | Path, num_pairs: int, resize_width: int, info: VideoInfo | None = None) -> float:
    """Mean flow magnitude (pixels per frame at `resize_width`) over `num_pairs` evenly spaced consecutive pairs.
    info: the file's `video_info`, where the caller has it."""
    import cv2

    info = info or video_info(path)
    total = frame_count(path, info)
    if total < 2:
        raise RuntimeError(f"{path} has {total} frames; motion needs at least 2")
    firsts = sorted({int(i) for i in np.linspace(0, total - 2, num_pairs)})
    # One sequential pass (seeking in H.264 decodes from the keyframe anyway and is less exact), grey,
    # scaled by ffmpeg to exactly `resize_width` (up too: the score is in pixels at that width).
    frames = pick_frames(path, set(firsts) | {i + 1 for i in firsts}, width=resize_width, upscale=True,
                         pix_fmt="gray", info=info)
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
            source, info = frame_source(row["mp4_path"], row.get("frames_path"), width=c.resize_width,
                                        num_frames=row.get("video", {}).get("num_frames"))
            score = round(motion_score(source, c.num_pairs, c.resize_width, info), 4)
            if score < c.min_motion:
                out.append(self.reject(row, "static", f"motion {score:.3f} px/frame < filters.motion.min_motion "
                                       f"{c.min_motion}", motion=score))
            else:
                out.append(self.with_scores(row, motion=score))
        return out
