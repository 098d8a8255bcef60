"""Decoding a sample's media members from bytes: frames resized and centre-cropped during
decoding (libswscale, so a 1344x704 clip never exists as a full-size tensor), and 16 kHz mono audio."""
from __future__ import annotations

import io

import av
import numpy as np
import soundfile
import torch
from torch import Tensor

# The aligned audio reader of the encoders package, shared so raw training and curation cut the
# same samples; it takes an open container, which works on in-memory members too.
from ovi_pl.encoders.media import read_audio_track

from .geometry import resize_for_crop

AUDIO_RATE = 16_000
_MAX_AUDIO_PAD_S = 0.1  # containers often end the audio a few ms before the video


def decode_video(data: bytes, num_frames: int, fps: float, size: tuple[int, int] | None, start: float = 0.0) -> Tensor:
    """uint8 [3, num_frames, h, w]: frames at start + i / fps (the latest frame shown at each time),
    resized to cover `size` (height, width) keeping the aspect ratio, then centre-cropped to it."""
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            raise ValueError("the mp4 has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        src_h, src_w = stream.codec_context.height, stream.codec_context.width
        size = size or (src_h, src_w)
        scaled_h, scaled_w = resize_for_crop(src_h, src_w, size)
        top, left = (scaled_h - size[0]) // 2, (scaled_w - size[1]) // 2
        out = torch.empty((3, num_frames, *size), dtype=torch.uint8)
        targets = start + np.arange(num_frames) / fps
        tolerance = 0.5 / fps  # container timestamps are rounded
        filled, latest, t = 0, None, 0.0
        for frame in container.decode(stream):
            t = float(frame.time)
            while filled < num_frames and targets[filled] + tolerance < t:
                if latest is None:
                    raise ValueError(f"video starts at {t:.3f} s, after the clip start {start} s")
                out[:, filled] = latest
                filled += 1
            if filled == num_frames:
                break
            rgb = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24", interpolation="AREA").to_ndarray()
            latest = torch.from_numpy(rgb[top : top + size[0], left : left + size[1]]).permute(2, 0, 1)
        else:
            while filled < num_frames and latest is not None and targets[filled] <= t + tolerance:
                out[:, filled] = latest
                filled += 1
    if filled < num_frames:
        raise ValueError(f"the mp4 holds {filled} of the {num_frames} frames needed at {fps} fps from {start} s")
    return out


def decode_audio_member(data: bytes, ext: str, seconds: float | None) -> Tensor:
    """float32 mono [samples] from a `.flac`/`.wav` member, cut or padded to `seconds` (None: all)."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if rate != AUDIO_RATE:
        raise ValueError(f"the .{ext} member is {rate} Hz; shards hold {AUDIO_RATE} Hz audio")
    return _fit(samples.mean(axis=1), seconds, ext)


def decode_mp4_audio(data: bytes, seconds: float, start: float = 0.0) -> Tensor:
    """float32 mono 16 kHz [seconds * 16000] from the mp4's audio track, aligned with its video."""
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise ValueError("the mp4 has no audio stream and the sample no .flac/.wav member")
        return read_audio_track(container, AUDIO_RATE, start, round(seconds * AUDIO_RATE), _MAX_AUDIO_PAD_S, "mp4 member")


def _fit(samples: np.ndarray, seconds: float | None, what: str) -> Tensor:
    if seconds is not None:
        wanted = round(seconds * AUDIO_RATE)
        missing = wanted - samples.shape[0]
        if missing > _MAX_AUDIO_PAD_S * AUDIO_RATE:
            raise ValueError(f"the .{what} member lasts {samples.shape[0] / AUDIO_RATE:.3f} s, {seconds} s needed")
        samples = np.pad(samples[:wanted], (0, max(missing, 0)))
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).clamp(-1.0, 1.0)
