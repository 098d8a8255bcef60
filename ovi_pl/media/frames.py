"""Video frames as numpy arrays, decoded by ffmpeg in a subprocess.

ffmpeg opens any path the file system has (names that are not UTF-8 included, which OpenCV cannot
open), scales while decoding, so a 4K source never exists at full size in Python, and resamples to a
frame rate with the nearest-frame rule every stage expects. Frames stream through a pipe one at a
time, so a two-hour source costs one frame of memory.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tools import FFMPEG, MediaToolError, ffprobe_json, parse_rate

_CHANNELS = {"bgr24": 3, "rgb24": 3, "gray": 1}


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream as a player shows it (rotation applied)."""

    width: int
    height: int
    fps: float | None
    duration_s: float | None


def video_info(path: str | Path) -> VideoInfo:
    """Display size, frame rate and duration of the first video stream; raises ValueError without one."""
    info = ffprobe_json(path)
    stream = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"
                   and not s.get("disposition", {}).get("attached_pic")), None)
    if stream is None:
        raise ValueError(f"{path}: no video stream")
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if abs(_rotation(stream)) % 180 == 90:  # ffmpeg autorotates while decoding
        width, height = height, width
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    fps = parse_rate(stream.get("avg_frame_rate")) or parse_rate(stream.get("r_frame_rate"))
    return VideoInfo(width, height, fps, float(duration) if duration not in (None, "N/A") else None)


def _rotation(stream: dict) -> float:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return float(side["rotation"])
    return float(stream.get("tags", {}).get("rotate", 0) or 0)


def scaled_size(info: VideoInfo, width: int | None) -> tuple[int, int]:
    """(width, height) of frames scaled to `width` keeping the aspect ratio, both even; the source size for None."""
    if width is None or width >= info.width:
        return info.width, info.height
    height = max(2, round(info.height * width / info.width / 2) * 2)
    return width, height


def iter_frames(path: str | Path, *, fps: float | None = None, width: int | None = None, pix_fmt: str = "bgr24",
                start_s: float | None = None, duration_s: float | None = None,
                timeout_s: float = 600.0) -> Iterator[np.ndarray]:
    """Frames of the first video stream, [H, W, 3] uint8 (or [H, W] for `gray`), in display order.

    fps: resample to this rate (each output frame is the source frame shown at its time); None keeps
    the source's frames. width: scale down to this width (never up).
    """
    if pix_fmt not in _CHANNELS:
        raise ValueError(f"pix_fmt {pix_fmt!r}: use one of {sorted(_CHANNELS)}")
    info = video_info(path)
    out_w, out_h = scaled_size(info, width)
    filters = ([f"fps={fps}"] if fps else []) + [f"scale={out_w}:{out_h}:flags=area"]
    args = [FFMPEG, "-v", "error", "-nostdin"]
    if start_s:
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", str(path)]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    args += ["-map", "0:v:0", "-vf", ",".join(filters), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    channels = _CHANNELS[pix_fmt]
    frame_bytes = out_w * out_h * channels
    shape = (out_h, out_w) if channels == 1 else (out_h, out_w, channels)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError as exc:
            raise MediaToolError("ffmpeg is not installed or not on PATH (apt-get install ffmpeg)") from exc
        assert proc.stdout is not None
        try:
            while True:
                data = proc.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    break
                yield np.frombuffer(data, np.uint8).reshape(shape)
            code = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:  # the caller stopped early, or a timeout
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if code != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-3:]
            raise MediaToolError(f"ffmpeg could not decode {path}: {' | '.join(tail) or f'exit {code}'}")


def read_frames(path: str | Path, **kwargs) -> np.ndarray:
    """All frames `iter_frames` yields, stacked: [N, H, W, 3] or [N, H, W]; raises ValueError when there are none."""
    frames = list(iter_frames(path, **kwargs))
    if not frames:
        raise ValueError(f"{path}: ffmpeg decoded no video frames")
    return np.stack(frames)


def sample_frames(path: str | Path, count: int, *, width: int | None = None,
                  pix_fmt: str = "bgr24") -> list[np.ndarray]:
    """`count` frames evenly spaced from the first to the last frame, decoded in one pass."""
    frames = read_frames(path, width=width, pix_fmt=pix_fmt)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks]
