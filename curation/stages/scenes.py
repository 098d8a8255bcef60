"""Scene detection (hard cuts, flashes, dissolves, fades, black) and cutting each scene into fixed-length clips.

A clip is `clip.num_frames` frames at `clip.fps` (121 at 24 = 5.04 s of source time) and lies wholly inside
one scene: a cut inside a training clip teaches the model that cuts are motion, and a clip that starts in the
middle of a cross-dissolve teaches it that people fade into each other.

The source is decoded once, by ffmpeg (`ovi_pl.media.frames.iter_frames`: any file name, scaled while
decoding), at `clip.fps` (the frames a clip will be made of) and 256 px wide (PySceneDetect's auto-downscale
size). Each frame goes through PySceneDetect's detectors with `process_frame` and a small rolling state; only
a few dozen small frames are held at a time, so a two-hour source costs the same memory as a 5 s one.

- Hard cuts: `ContentDetector` (mean HSV change between consecutive frames >= `scenes.threshold`), every
  frame above the threshold, no minimum scene length: merging short scenes (PySceneDetect's FlashFilter,
  `min_scene_len`) keeps a cut inside a scene when a shot lasts fewer frames than the filter.
- Flashes: a cut whose picture is back within `scenes.max_flash_frames` frames (the frame after the flash
  scores below `threshold` against the frame before it) is not a cut; the flash frames stay in the shot.
- Gradual transitions (dissolves, fades to and from black or white), found in two steps:
  1. Where: a blend test in windows of 13, 25 and 49 frames. In a window whose end frames differ by
     >= `scenes.blend_min_change` (mean 8-bit change at 64 px), a blend's middle frame lies on the line
     between the ends, so its distance from their average is a small fraction of their distance (0 for a
     still dissolve); after a cut, in a flash and under motion (a pan, a zoom, a talking head) the middle
     frame is one end or something else (fraction 0.34-0.75 measured). A middle frame with a fraction below
     `scenes.blend_max_residual` is blended.
  2. How far: twin comparison on the change of the YUV histograms between consecutive frames, which motion
     hardly moves (a pan or a moving pattern keeps its colours) and every blended frame does (it makes new
     pixel values). From the blended frames the span grows to each side until the change stays under a
     quarter of its level inside the blend for 3 frames; the span and one frame on each side are kept out
     of clips. Blended frames whose histogram change is no burst over the footage around them are motion
     and dropped.
- Black: runs of frames darker than `scenes.black_threshold` (PySceneDetect `ThresholdDetector`) are
  excluded too; they catch a cut from black into a dark shot that ContentDetector does not score as a cut.

Wipes (a moving edge between two shots) are not found: spatially a wipe is a cut and in histograms it
looks like a pan. See bench/scenes.py for measurements.
"""
from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..config import ClipConfig, ScenesConfig
from ..keys import clip_key
from ..records import ClipRow, InputRow
from ..stage import Row, Stage

# Float slack when a scene is exactly one clip long (122 frames at 24 fps hold one 121-frame clip).
_EPS_S = 1e-6
# Frames go to the detectors at this width (PySceneDetect's auto_downscale target: cuts and flashes
# survive it, it is what the thresholds were tuned on); the blend test runs on 64 px.
DETECT_WIDTH = 256
BLEND_WIDTH = 64
# Half-widths (frames) of the blend test's windows: 13 to 49 frames, 0.5 to 2 s at 24 fps. Shorter and longer
# dissolves are found too: a window holding a whole blend passes at the blend's middle, and inside a longer
# linear ramp the test holds for every window that lies within it. Windows of 7 frames would add nothing the
# others miss but let small smooth motion, which is nearly linear over a few frames, pass (bench: 0.29).
BLEND_SCALES = (6, 12, 24)
# Twin comparison on the histogram change (L1 distance of consecutive frames' YUV histograms, 32 bins a
# channel, 0-2): a span grows while the change is at least LOW_FRACTION of its median over the blended frames
# (and at least LOW_FLOOR), through dips of up to GAP_FRAMES - 1 frames, by at most MAX_GROW_FRAMES a side.
# Measured (bench/scenes.py sources): median over a blend's frames 0.06-1.4, footage around it 0.007-0.02,
# pans and moving patterns 0.01-0.08.
LOW_FRACTION = 0.25
LOW_FLOOR = 0.03
GAP_FRAMES = 3
MAX_GROW_FRAMES = 96
# A blend is a burst of histogram change: its median over the blended frames must be at least BURST_RATIO
# times the lower quartile over the BASELINE_FRAMES on each side of the grown span (a quartile, so that another
# transition nearby does not raise it). Small, smooth motion passes the
# blend test in short windows (a small shift is nearly linear in the pixel values) but does not change the
# colours faster than the footage around it. Measured: blends 9-85x their surroundings; the one motion
# candidate seen (7-frame windows on a shaking shot) 1.0x.
BURST_RATIO = 3.0
BASELINE_FRAMES = 24
# Frames kept out of clips on each side of a grown span: the decoder's and the transcoder's frame times can
# differ by one.
PAD_FRAMES = 1


@dataclass
class SceneAnalysis:
    """What `analyze_scenes` found, in frames at `fps` (frame i shows source time i / fps)."""

    fps: float
    num_frames: int
    # First frame of each new shot after a hard cut.
    cuts: list[int] = field(default_factory=list)
    # (first, last) frames of gradual transitions and black runs; no scene holds any of these frames.
    transitions: list[tuple[int, int]] = field(default_factory=list)
    # (first, last) frames of flashes that returned to their shot; they stay in it.
    flashes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def scene_frames(self) -> list[tuple[int, int]]:
        """(first, end) frames of each scene, end exclusive."""
        return scene_frames(self.num_frames, self.cuts, self.transitions)

    @property
    def scenes(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of each scene."""
        return [(a / self.fps, b / self.fps) for a, b in self.scene_frames]


def scene_frames(num_frames: int, cuts: list[int], transitions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The frames [0, num_frames) without the transitions' frames, split at the cuts: (first, end) per scene."""
    excluded = np.zeros(num_frames + 1, bool)
    excluded[num_frames] = True
    for first, last in transitions:
        excluded[max(first, 0):min(last, num_frames - 1) + 1] = True
    starts = np.zeros(num_frames + 1, bool)
    starts[[c for c in cuts if 0 < c < num_frames]] = True
    scenes, first = [], None
    for i in range(num_frames + 1):
        if first is not None and (excluded[i] or starts[i]):
            scenes.append((first, i))
            first = None
        if first is None and not excluded[i]:
            first = i
    return scenes


def _content_score(hsv_a: np.ndarray, hsv_b: np.ndarray) -> float:
    """ContentDetector's frame score (default weights): mean absolute change of hue, saturation and value."""
    return float(np.abs(hsv_a.astype(np.int16) - hsv_b.astype(np.int16)).mean())


class _Scanner:
    """Feeds frames one at a time to PySceneDetect's detectors and the blend test; keeps a bounded history."""

    def __init__(self, config: ScenesConfig, fps: float):
        from scenedetect import ContentDetector, ThresholdDetector

        self.config = config
        self.fps = float(fps)
        # min_scene_len=0 disables ContentDetector's FlashFilter: every frame over the threshold is a cut.
        self.content = ContentDetector(threshold=config.threshold, min_scene_len=0)
        # fade_bias=-1 reports a dark run at its first frame, when the picture comes back (the current frame).
        self.black = ThresholdDetector(threshold=config.black_threshold, min_scene_len=0, fade_bias=-1.0,
                                       add_final_scene=True)
        self.n = 0
        # HSV (256 px) of the last max_flash_frames + 2 frames, for the flash test; 64 px BGR of the last 49, for
        # the blend test
        self.hsv: deque[np.ndarray] = deque(maxlen=config.max_flash_frames + 2)
        self.small: deque[np.ndarray] = deque(maxlen=2 * max(BLEND_SCALES) + 1)
        self.pending: list[tuple[int, np.ndarray]] = []  # cuts that a flash may yet cancel: (frame, HSV before)
        self.cuts: list[int] = []
        self.flashes: list[tuple[int, int]] = []
        self.blended: list[list[int]] = []  # disjoint, sorted [first, last] runs of frames the blend test passed
        self.hist_change = array("f")  # per frame: L1 change of its YUV histograms from the frame before
        self.hist: np.ndarray | None = None
        self.black_runs: list[tuple[int, int]] = []

    def feed(self, frame: np.ndarray) -> None:
        import cv2
        from scenedetect import FrameTimecode

        t = self.n
        timecode = FrameTimecode(t, fps=self.fps)
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        self.hsv.append(hsv)
        self._histogram(frame)
        new_cuts = [c.frame_num for c in self.content.process_frame(timecode, frame)]
        self._resolve_flashes(t, hsv, new_cuts)
        for c in new_cuts:
            if self.config.max_flash_frames == 0:
                self.cuts.append(c)
            else:
                self.pending.append((c, self._hsv_at(c - 1)))
        for start in self.black.process_frame(timecode, frame):
            self._black_run(start.frame_num, t - 1, hsv)
        height = max(2, round(frame.shape[0] * BLEND_WIDTH / frame.shape[1]))
        self.small.append(cv2.resize(frame, (BLEND_WIDTH, height), interpolation=cv2.INTER_AREA).astype(np.float32))
        self._blend_test(t)
        self.n += 1

    def _hsv_at(self, frame: int) -> np.ndarray:
        return self.hsv[len(self.hsv) - 1 - (self.n - frame)]

    def _resolve_flashes(self, t: int, hsv: np.ndarray, new_cuts: list[int]) -> None:
        """A pending cut is a flash if frame t looks like the frame before it; a cut once too late for that.

        The pending cuts are in frame order; the first that returns makes frames [cut, t-1] a flash, and the
        cuts inside it and the cut out of it (at t) go with it.
        """
        still = []
        for frame, before in self.pending:
            if _content_score(before, hsv) < self.config.threshold:
                self.flashes.append((frame, t - 1))
                new_cuts.clear()
                break
            if t - frame >= self.config.max_flash_frames:
                self.cuts.append(frame)
            else:
                still.append((frame, before))
        self.pending = still

    def _black_run(self, first: int, last: int, hsv: np.ndarray | None) -> None:
        if last < first:
            return
        short = last - first + 1 <= self.config.max_flash_frames
        if short and hsv is not None and first > 0 and \
                _content_score(self._hsv_at(first - 1), hsv) < self.config.threshold:
            self.flashes.append((first, last))  # a blackout of a few frames back into the same shot
            return
        self.black_runs.append((first, last))

    def _blend_test(self, t: int) -> None:
        frames = self.small
        for h in BLEND_SCALES:
            if len(frames) < 2 * h + 1:
                break
            start, middle, end = frames[-1 - 2 * h], frames[-1 - h], frames[-1]
            change = float(np.abs(end - start).mean())
            if change < self.config.blend_min_change:
                continue
            residual = float(np.abs(middle - (start + end) * 0.5).mean())
            if residual < self.config.blend_max_residual * change:
                self._add_blended(t - h)

    def _add_blended(self, frame: int) -> None:
        """Mark `frame` blended; runs stay sorted and disjoint (the scales report frames out of order)."""
        i = len(self.blended)
        while i > 0 and self.blended[i - 1][0] > frame:
            i -= 1
        if i > 0 and self.blended[i - 1][1] >= frame - 1:
            self.blended[i - 1][1] = max(self.blended[i - 1][1], frame)
            i -= 1
        else:
            self.blended.insert(i, [frame, frame])
        while i + 1 < len(self.blended) and self.blended[i + 1][0] <= self.blended[i][1] + 1:
            self.blended[i][1] = max(self.blended[i][1], self.blended.pop(i + 1)[1])

    def _histogram(self, frame: np.ndarray) -> None:
        import cv2

        yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV)
        hist = np.concatenate([cv2.calcHist([yuv], [c], None, [32], [0, 256]).ravel() for c in range(3)])
        hist /= hist[:32].sum()
        self.hist_change.append(0.0 if self.hist is None else float(np.abs(hist - self.hist).sum()) / 3)
        self.hist = hist

    def _grow(self, first: int, last: int) -> tuple[int, int] | None:
        """Twin comparison: widen the blended run [first, last] while the histogram change stays high; None
        when the run is no burst of histogram change (motion, not a blend)."""
        change = np.frombuffer(self.hist_change, np.float32)
        inside = float(np.median(change[first:last + 1]))
        low = max(LOW_FLOOR, LOW_FRACTION * inside)

        def walk(start: int, step: int) -> int:
            edge, t, below = start, start + step, 0
            while 0 <= t < len(change) and abs(t - start) <= MAX_GROW_FRAMES and below < GAP_FRAMES:
                if change[t] >= low:
                    edge, below = t, 0
                else:
                    below += 1
                t += step
            return edge

        lo, hi = walk(first, -1), walk(last, +1)
        # change[t] compares t with t-1, so lo is the first blended frame and hi the first clean one after the
        # blend (it still differs from the last blended frame); PAD_FRAMES widens the span by one more each side.
        around = np.concatenate([change[max(lo - BASELINE_FRAMES, 1):lo], change[hi + 1:hi + 1 + BASELINE_FRAMES]])
        if around.size and inside < BURST_RATIO * float(np.percentile(around, 25)):
            return None
        return max(lo - PAD_FRAMES, 0), min(hi + PAD_FRAMES, self.n - 1)

    def finish(self) -> SceneAnalysis:
        from scenedetect import FrameTimecode

        if self.n == 0:
            raise ValueError("ffmpeg decoded no video frames")
        for frame, _ in self.pending:  # the video ended inside a would-be flash: keep the cut
            self.cuts.append(frame)
        for start in self.black.post_process(FrameTimecode(self.n - 1, fps=self.fps)):
            self._black_run(start.frame_num, self.n - 1, None)
        grown = [self._grow(a, b) for a, b in self.blended]
        transitions = _merge([g for g in grown if g is not None] + self.black_runs)
        # a cut inside a transition (ContentDetector scores the noisy hue of near-black frames) adds nothing
        cuts = sorted(c for c in set(self.cuts) if not any(a <= c <= b + 1 for a, b in transitions))
        return SceneAnalysis(self.fps, self.n, cuts, transitions, _merge(self.flashes))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def analyze_scenes(path: str | Path, config: ScenesConfig, fps: float) -> SceneAnalysis:
    """Cuts, flashes and transitions of the first video stream, decoded once at `fps` and 256 px."""
    from ovi_pl.media.frames import iter_frames

    scanner = _Scanner(config, fps)
    for frame in iter_frames(path, fps=fps, width=DETECT_WIDTH):
        scanner.feed(frame)
    return scanner.finish()


def detect_scenes(path: str | Path, config: ScenesConfig, fps: float) -> list[tuple[float, float]]:
    """(start_s, end_s) of each scene: between cuts, never holding a frame of a transition."""
    return analyze_scenes(path, config, fps).scenes


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

    def _cut(self, row: InputRow) -> list[ClipRow] | list[InputRow]:
        clip_s = self.clip.num_frames / self.clip.fps
        duration = row["probe"]["duration_s"]
        if duration + _EPS_S < clip_s:
            return [self.reject(row, "too_short", f"source lasts {duration:.2f} s, shorter than one "
                                f"{self.clip.num_frames}-frame clip at {self.clip.fps} fps ({clip_s:.2f} s)")]
        analysis = analyze_scenes(row["path"], self.scenes, self.clip.fps)
        scenes = analysis.scenes
        windows = clip_windows(scenes, clip_s, self.scenes.max_clips_per_scene)
        if not windows:
            longest = max((e - s for s, e in scenes), default=0.0)
            return [self.reject(row, "scenes_too_short", f"{len(scenes)} scenes ({len(analysis.cuts)} cuts, "
                                f"{len(analysis.transitions)} transitions), the longest {longest:.2f} s, "
                                f"none holds a {clip_s:.2f} s clip")]
        base = {k: v for k, v in row.items() if k not in ("record_type",)}
        clips: list[ClipRow] = [
            {**base, "record_type": "clip", "key": clip_key(row["uri"], i), "clip_index": i, "num_clips": len(windows),
             "scene_index": scene, "num_scenes": len(scenes), "start_s": round(start, 6), "end_s": round(end, 6),
             "scores": dict(row.get("scores", {}))}
            for i, (scene, start, end) in enumerate(windows)]
        return clips
