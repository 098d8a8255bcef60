"""Video frames as numpy arrays, decoded by ffmpeg in a subprocess.

ffmpeg opens any path the file system has (names that are not UTF-8 included, which OpenCV cannot
open), applies the rotation a player would, scales while decoding, so a 4K source never exists at full
size in Python, and resamples to a frame rate with the nearest-frame rule every stage expects. Frames
stream through a pipe one at a time, so a two-hour source costs one frame of memory.

This is the reader for files (curation, SyncNet, evaluation); clips already in memory (shard members)
are decoded in-process by `ovi_pl.media.av_clip`.
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tools import FFMPEG, MediaToolError, count_video_frames, ffprobe_json, parse_rate

_CHANNELS = {"bgr24": 3, "rgb24": 3, "gray": 1}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream as a player shows it (rotation and pixel aspect applied: `display_size`)."""

    width: int
    height: int
    fps: float | None
    duration_s: float | None
    num_frames: int | None = None  # as the container's header says; None where it does not say


def video_info(path: str | Path) -> VideoInfo:
    """Display size, frame rate, duration and frame count of the first video stream; raises ValueError without one."""
    info = ffprobe_json(path)
    stream = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"
                   and not s.get("disposition", {}).get("attached_pic")), None)
    if stream is None:
        raise ValueError(f"{path}: no video stream")
    width, height = display_size(stream)
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    fps = parse_rate(stream.get("avg_frame_rate")) or parse_rate(stream.get("r_frame_rate"))
    frames = str(stream.get("nb_frames") or "")
    return VideoInfo(width, height, fps, float(duration) if duration not in (None, "N/A") else None,
                     int(frames) if frames.isdigit() and int(frames) > 0 else None)


def display_size(stream: dict) -> tuple[int, int]:
    """(width, height) of an ffprobe video stream as a player shows it, in square pixels: a phone's portrait
    video is often stored landscape with a quarter-turn rotation, which ffmpeg applies while decoding; DV,
    HDV and broadcast video store a wide picture in narrow pixels (a sample aspect ratio, 32:27 for
    widescreen NTSC DV), which players stretch and ffmpeg does not: the readers scale to this size."""
    return shown_size(int(stream.get("width") or 0), int(stream.get("height") or 0),
                      parse_rate(str(stream.get("sample_aspect_ratio") or "").replace(":", "/")), _rotation(stream))


def shown_size(width: int, height: int, pixel_aspect: float | None, rotation: float) -> tuple[int, int]:
    """(width, height) of stored frames as shown: stretched by the pixel aspect (None or 0: square), turned
    by the rotation in degrees. The one rule of both readers (`display_size`, `av_clip.read_video`)."""
    if pixel_aspect and width:
        width = max(1, round(width * pixel_aspect))
    return (height, width) if abs(rotation) % 180 == 90 else (width, height)


def _rotation(stream: dict) -> float:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return float(side["rotation"])
    return float(stream.get("tags", {}).get("rotate", 0) or 0)


def scaled_size(info: VideoInfo, width: int | None, upscale: bool = False) -> tuple[int, int]:
    """(width, height) of frames scaled to `width` keeping the aspect ratio, both even; the source size for
    None, and for a narrower source unless `upscale`."""
    if width is None or width == info.width or (width > info.width and not upscale):
        return info.width, info.height
    height = max(2, round(info.height * width / info.width / 2) * 2)
    return width, height


def resample_filters(fps: float, source_fps: float | None) -> list[str]:
    """ffmpeg filters that resample to `fps` by the nearest-frame rule: output frame n (at n / fps from the
    first frame) is source frame floor(n * source_fps / fps + 0.5), the later one on a tie, for as long as
    that frame exists.

    ffmpeg's fps filter alone shows each source frame from its time rounded to the output grid, so a frame
    lying just past a grid point loses that point to its predecessor (24 -> 25 fps: output 12 would be
    frame 11, not the nearer 12). Moving every frame half a source frame earlier and rounding up gives
    the nearest frame instead.
    """
    if not source_fps:
        return [f"fps={fps}"]  # no source rate to take half a frame of: ffmpeg's own rounding
    return [f"setpts=PTS-STARTPTS-0.5/({source_fps!r}*TB)", f"fps={fps}:round=up:start_time=0"]


def iter_frames(path: str | Path, *, fps: float | None = None, width: int | None = None, upscale: bool = False,
                pix_fmt: str = "bgr24", start_s: float | None = None, duration_s: float | None = None,
                info: VideoInfo | None = None, timeout_s: float = 600.0) -> Iterator[np.ndarray]:
    """Frames of the first video stream, [H, W, 3] uint8 (or [H, W] for `gray`), in display order.

    fps: resample to this rate by the nearest-frame rule (`resample_filters`); None yields every decoded
    frame once, as stored (no frame dropped or repeated for a variable rate). width: scale to this width
    (area averaging), never up unless `upscale` (for measures taken in pixels at a fixed width).
    info: the file's `video_info`, where the caller has it already (saves an ffprobe run).
    """
    if pix_fmt not in _CHANNELS:
        raise ValueError(f"pix_fmt {pix_fmt!r}: use one of {sorted(_CHANNELS)}")
    info = info or video_info(path)
    out_w, out_h = scaled_size(info, width, upscale)
    filters = (resample_filters(fps, info.fps) if fps else []) + [f"scale={out_w}:{out_h}:flags=area"]
    args = [FFMPEG, "-v", "error", "-nostdin"]
    if start_s:
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", str(path)]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    # passthrough: rawvideo has no timestamps, so ffmpeg would otherwise force the stream's nominal rate.
    args += ["-map", "0:v:0", "-vf", ",".join(filters), "-vsync", "passthrough",
             "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
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


def frame_count(path: str | Path, info: VideoInfo | None = None) -> int:
    """Frames in the first video stream: the header's count, or the packets counted where it has none."""
    return (info or video_info(path)).num_frames or count_video_frames(path)


def pick_frames(path: str | Path, indices: Iterable[int], **kwargs) -> dict[int, np.ndarray]:
    """The frames at `indices` (0-based, in decoding order), decoded in one pass that stops after the last
    one asked for, so only those frames are kept; indices past the end are missing from the result.
    kwargs: as for `iter_frames` (width, upscale, pix_fmt, info; not fps)."""
    wanted = set(indices)
    last = max(wanted, default=-1)
    picked: dict[int, np.ndarray] = {}
    if last < 0:
        return picked
    frames = iter_frames(path, **kwargs)
    try:
        for index, frame in enumerate(frames):
            if index in wanted:
                picked[index] = frame
            if index >= last:
                break
    finally:
        frames.close()  # stops ffmpeg there, not at the end of the file
    return picked


def sample_frames(path: str | Path, count: int, *, width: int | None = None,
                  pix_fmt: str = "bgr24") -> list[np.ndarray]:
    """`count` frames evenly spaced from the first to the last frame, decoded in one pass.

    Where the header counts more frames than decode (edit lists), picks past the end repeat the last
    decoded frame. Raises ValueError when no frame decodes.
    """
    info = video_info(path)
    total = frame_count(path, info)
    picks = [int(i) for i in np.linspace(0, max(total - 1, 0), count).round()]
    picked = pick_frames(path, picks, width=width, pix_fmt=pix_fmt, info=info)
    if not picked:
        raise ValueError(f"{path}: ffmpeg decoded no video frames")
    last = picked[max(picked)]
    return [picked.get(i, last) for i in picks]


def frame_source(clip: str | Path, cache: str | Path | None = None, *, width: int | None,
                 num_frames: int | None = None) -> tuple[Path, VideoInfo]:
    """The file to decode the clip's frames from, with its `video_info`: the clip's frame cache when it can
    stand in for the clip at `width`, else the clip itself.

    A frame cache is a small copy of the clip's frames that curation's transcode writes beside the clip
    (same frames and rate, scaled down, MJPEG): decoding it costs a fraction of decoding the clip. It
    stands in when it exists, is at least `width` wide (None asks for the clip's own size: never the
    cache; a clip narrower than `width` has a cache as narrow, and is decoded) and holds `num_frames`
    frames where the caller knows the clip's count. Otherwise the clip is decoded: the cache is only a
    faster way to the same frames, so a missing or damaged one costs time, never the clip. A damaged one
    (unreadable, or another frame count) is logged as a warning naming it.
    """
    if cache is not None and width is not None and Path(cache).is_file():
        try:
            info = video_info(cache)
        except (MediaToolError, ValueError) as exc:
            _log.warning(f"frame cache {cache} is unreadable ({exc}); decoding {clip} instead")
        else:
            if num_frames is not None and info.num_frames != num_frames:
                _log.warning(f"frame cache {cache} holds {info.num_frames} frames where the clip has {num_frames}; "
                             f"decoding {clip} instead")
            elif info.width >= width:
                return Path(cache), info
    return Path(clip), video_info(clip)


def frame_cache_args(dest: str | Path, width: int, num_frames: int, video_filters: str = "",
                     quality: int = 3) -> list[str]:
    """ffmpeg output arguments that write a frame cache (see `frame_source`) of input 0's first video stream:
    `video_filters` (the clip's own, so its frames are the clip's), scaled to `width` wide (never up),
    `num_frames` frames as MJPEG in a .mov (whose header states the frame count `frame_source` checks).

    MJPEG decodes at a fraction of H.264's cost; `quality` is ffmpeg's -q:v (2 best .. 31).
    """
    scale = f"scale='min({width},iw)':-2:flags=area"
    return ["-map", "0:v:0", "-vf", ",".join(f for f in (video_filters, scale) if f), "-frames:v", str(num_frames),
            "-an", "-c:v", "mjpeg", "-q:v", str(quality), "-f", "mov", str(dest)]
