"""Decoding a clip in this process with PyAV, from a path or from bytes in memory (a shard's `.mp4` member):
N frames at a fixed rate, optionally resized and centre-cropped while decoding. Its audio over the same
span comes from `ovi_pl.media.audio.decode_audio`; together they are the aligned audio-video reader of
raw-mode training, the latent stage, the encoders and evaluation.

Frames come back as numpy arrays, channels first ([3, F, H, W] uint8, preallocated, one copy per plane and
frame), so `torch.from_numpy` hands them to a model without a copy. Frames are read as a player shows
them, as the ffmpeg reader (`ovi_pl.media.frames`) reads them: turned by the rotation metadata and with
narrow pixels made square. Curation writes training clips upright in square pixels; a video given to
generation may be a phone's.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .frames import shown_size

# A file path, or the file's bytes (what a shard member holds).
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def open_container(source: Source) -> av.container.InputContainer:
    """PyAV's input container over a path or over bytes in memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return av.open(io.BytesIO(source))
    return av.open(os.fspath(source))


def describe(source: Source, name: str | None = None) -> str:
    """How errors name a source: `name`, the path, or the size of the bytes."""
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the in-memory file of {len(source)} bytes"
    return os.fspath(source)  # type: ignore[return-value]


def resize_for_crop(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """The smallest size with the clip's aspect ratio that covers `target`; centre-cropping it gives `target`."""
    scale = max(target[0] / height, target[1] / width)
    return max(target[0], math.ceil(height * scale - 1e-6)), max(target[1], math.ceil(width * scale - 1e-6))


def stream_seconds(stream: av.stream.Stream, container: av.container.InputContainer) -> float:
    """A stream's duration as its header states it (the container's where the stream has none)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is None:
        raise ValueError("the container states no duration")
    return float(container.duration) / av.time_base


def read_video(source: Source, num_frames: int, fps: float | None = None, start: float = 0.0,
               size: tuple[int, int] | None = None, name: str | None = None, threads: int = 0) -> np.ndarray:
    """uint8 [3, num_frames, h, w] RGB: the frames at start + i / fps, each the frame nearest its time.

    fps None spreads the frames evenly over the stream's stated duration (fps = num_frames / duration).
    size (height, width): resize to cover it keeping the aspect ratio (area averaging, in libswscale, so
    a large source never exists at full size), then centre-crop to it; None keeps the decoded size.
    threads: decoder threads; 0 lets FFmpeg choose (frame threads on every core: the fastest way through
    one clip), 1 decodes in the calling thread (the least CPU time per clip, for loaders that already
    decode one clip per worker process and core).
    Raises ValueError when the video starts after `start` or ends before the last frame's time.
    """
    what = describe(source, name)
    with open_container(source) as container:
        if not container.streams.video:
            raise ValueError(f"{what} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if fps is None:
            fps = num_frames / stream_seconds(stream, container)
        # One converter for the clip (a frame's own would set up libswscale again for each frame), in this
        # thread (its slice threads cost more than they save at these sizes). Planar RGB lands channels
        # first without a transposing copy; unscaled it is rgb24's bytes, and scaled, its chroma is
        # interpolated fully (rgb24 gets that only with FULL_CHR_H_INT, at twice the cost), which puts it
        # 4x closer to the exact area average on the sample clips (tests/test_media.py checks a gradient).
        reformatter = VideoReformatter()
        layout: _Layout | None = None  # set by the first frame, which carries the rotation
        out = np.empty(0, np.uint8)

        def to_rgb(frame: av.VideoFrame) -> list[np.ndarray]:
            nonlocal layout, out
            if layout is None:
                layout = _Layout.of(frame, stream.codec_context.sample_aspect_ratio, size)
                # untouched pages: free until filled
                out = np.empty((3, num_frames, *layout.crop), dtype=np.uint8)
            planar = reformatter.reformat(frame, width=layout.scaled[1], height=layout.scaled[0], format="gbrp",
                                          interpolation="AREA", threads=1)
            g, b, r = (layout.cut(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width])
                       for p in planar.planes)
            return [r, g, b]

        targets = start + np.arange(num_frames) / fps
        # A frame counts from half a source frame before its time: container timestamps are rounded, and
        # at another rate than the source's this picks the frame nearest each target time (the later one
        # on a tie), the rule of ovi_pl.media.frames.iter_frames(fps=...).
        # (1 ns more, so a tie does not hang on how the sum of two floats rounds.)
        tolerance = 0.5 / float(stream.average_rate or stream.guessed_rate or fps) + 1e-9
        latest: list[np.ndarray] | None = None
        filled, t = 0, 0.0
        for frame in container.decode(stream):
            t = float(frame.time)
            # Every target before this frame's time shows the previous frame.
            while filled < num_frames and targets[filled] + tolerance < t:
                if latest is None:
                    raise ValueError(f"{what}: video starts at {t:.3f} s, after the clip start {start} s")
                _put(out, filled, latest)
                filled += 1
            if filled == num_frames:
                break
            latest = to_rgb(frame)  # views: the copy happens once, into `out`
        else:
            # The stream ended: the last frame covers targets up to half a source frame after its time.
            while filled < num_frames and latest is not None and targets[filled] <= t + tolerance:
                _put(out, filled, latest)
                filled += 1
    if filled < num_frames:
        raise ValueError(f"{what} holds {filled} of the {num_frames} frames needed at {fps:g} fps from {start} s")
    return out


@dataclass(frozen=True)
class _Layout:
    """Where a stored frame's pixels go: scaled (stored orientation) to `scaled`, turned by `turns` quarter
    turns counter-clockwise, then centre-cropped to `crop` (height, width)."""

    scaled: tuple[int, int]
    turns: int
    crop: tuple[int, int]

    @classmethod
    def of(cls, frame: av.VideoFrame, pixel_aspect: Fraction | None, size: tuple[int, int] | None) -> _Layout:
        turns = round(frame.rotation / 90) % 4
        shown_w, shown_h = shown_size(frame.width, frame.height, float(pixel_aspect or 0), frame.rotation)
        shown = (shown_h, shown_w)
        scaled = shown if size is None else resize_for_crop(*shown, size)
        return cls(scaled[::-1] if turns % 2 else scaled, turns, size or shown)

    def cut(self, plane: np.ndarray) -> np.ndarray:
        plane = np.rot90(plane, self.turns) if self.turns else plane
        top, left = (plane.shape[0] - self.crop[0]) // 2, (plane.shape[1] - self.crop[1]) // 2
        return plane[top:top + self.crop[0], left:left + self.crop[1]]


def _put(out: np.ndarray, index: int, planes: list[np.ndarray]) -> None:
    for channel, plane in enumerate(planes):
        out[channel, index] = plane


def probe_av(source: Source) -> tuple[int, float, float]:
    """(decoded video frames, video seconds at the stream rate, audio seconds) of a file or its bytes.

    Audio seconds come from the stream's duration, which excludes the AAC encoder's priming and
    padding (an mp4 edit list); decoders may hand out up to one 1024-sample frame more. Raises
    ValueError when the audio track decodes to nothing.
    """
    with open_container(source) as container:
        vstream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(vstream))
        video_seconds = frames / float(vstream.average_rate)
    with open_container(source) as container:
        astream = container.streams.audio[0]
        decoded = sum(frame.samples for frame in container.decode(astream))
        if not decoded:
            raise ValueError(f"{describe(source)}: the audio stream decodes to no samples")
        audio_seconds = float(astream.duration * astream.time_base)
    return frames, video_seconds, audio_seconds
