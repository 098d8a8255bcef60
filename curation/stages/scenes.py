"""Scene detection (PySceneDetect ContentDetector) and cutting each scene into fixed-length clips.

A clip is `clip.num_frames` frames at `clip.fps` (121 at 24 = 5.04 s of source time) and lies
wholly inside one scene: a cut inside a training clip teaches the model that cuts are motion.
"""
from __future__ import annotations

from typing import ClassVar

from ..config import ClipConfig, ScenesConfig
from ..keys import clip_key
from ..stage import Row, Stage

# Float slack when a scene is exactly one clip long (122 frames at 24 fps hold one 121-frame clip).
_EPS_S = 1e-6


def detect_scenes(path: str, threshold: float, min_scene_len: int) -> list[tuple[float, float]]:
    """(start_s, end_s) of each scene; a video without cuts is one scene, returned as []."""
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path, backend="opencv")
    manager = SceneManager()
    manager.auto_downscale = True  # detection on ~256 px frames: cuts survive downscaling, time does not
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    manager.detect_scenes(video=video)
    return [(s.get_seconds(), e.get_seconds()) for s, e in manager.get_scene_list()]


def clip_windows(scenes: list[tuple[float, float]], clip_s: float, max_per_scene: int | None) -> list[tuple[int, float, float]]:
    """(scene_index, start_s, end_s) of back-to-back clips inside each scene."""
    windows = []
    for i, (start, end) in enumerate(scenes):
        n = int((end - start + _EPS_S) // clip_s)
        if max_per_scene is not None:
            n = min(n, max_per_scene)
        windows += [(i, start + j * clip_s, start + (j + 1) * clip_s) for j in range(n)]
    return windows


class CutClips(Stage):
    """One input row in, one row per clip out (or the input rejected with the reason it has none)."""

    name: ClassVar[str] = "scenes"
    fans_out: ClassVar[bool] = True

    def __init__(self, scenes: ScenesConfig, clip: ClipConfig):
        self.scenes = scenes
        self.clip = clip

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            out += self._cut(row)
        return out

    def _cut(self, row: Row) -> list[Row]:
        clip_s = self.clip.num_frames / self.clip.fps
        duration = row["probe"]["duration_s"]
        if duration + _EPS_S < clip_s:
            return [self.reject(row, "too_short", f"source lasts {duration:.2f} s, shorter than one "
                                f"{self.clip.num_frames}-frame clip at {self.clip.fps} fps ({clip_s:.2f} s)")]
        scenes = detect_scenes(row["path"], self.scenes.threshold, self.scenes.min_scene_len_frames)
        if not scenes:
            scenes = [(0.0, duration)]
        windows = clip_windows(scenes, clip_s, self.scenes.max_clips_per_scene)
        if not windows:
            longest = max(e - s for s, e in scenes)
            return [self.reject(row, "scenes_too_short", f"{len(scenes)} scenes, the longest {longest:.2f} s, "
                                f"none holds a {clip_s:.2f} s clip")]
        base = {k: v for k, v in row.items() if k not in ("record_type",)}
        return [{**base, "record_type": "clip", "key": clip_key(row["uri"], i), "clip_index": i,
                 "num_clips": len(windows), "scene_index": scene, "num_scenes": len(scenes),
                 "start_s": round(start, 6), "end_s": round(end, 6), "scores": dict(row.get("scores", {}))}
                for i, (scene, start, end) in enumerate(windows)]
