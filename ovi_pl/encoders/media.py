"""Decode an aligned audio-video clip with PyAV: N frames at a fixed frame rate and the audio
over the same span, mixed to mono and resampled (libswresample) to the audio VAE's rate."""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class AVClip:
    video: Tensor  # uint8 [3, F, H, W]
    audio: Tensor  # float32 [samples], mono, in [-1, 1]
    fps: float
    sample_rate: int
    start: float  # seconds into the file


def read_av_clip(
    path: str | os.PathLike[str],
    num_frames: int = 121,
    fps: float = 24.0,
    sample_rate: int = 16_000,
    start: float = 0.0,
    audio_seconds: float | None = None,
    max_audio_pad: float = 0.1,
) -> AVClip:
    """Frames at times start + i / fps (the latest frame shown at each time) and the audio from `start`.

    audio_seconds defaults to num_frames / fps rounded to 10 ms, which gives Ovi's 5.04 s
    (80640 samples at 16 kHz) for 121 frames at 24 fps. Audio that ends up to `max_audio_pad`
    seconds early (containers often cut it a few ms short of the video) is padded with silence.
    """
    if audio_seconds is None:
        audio_seconds = round(num_frames / fps, 2)
    num_samples = round(audio_seconds * sample_rate)
    with av.open(os.fspath(path)) as container:
        if not container.streams.video or not container.streams.audio:
            raise ValueError(f"{path} needs both a video and an audio stream")
        video = _read_frames(container, num_frames, fps, start, path)
    with av.open(os.fspath(path)) as container:
        audio = read_audio_track(container, sample_rate, start, num_samples, max_audio_pad, path)
    return AVClip(video=video, audio=audio, fps=fps, sample_rate=sample_rate, start=start)


def _read_frames(
    container: av.container.InputContainer, num_frames: int, fps: float, start: float, path: object
) -> Tensor:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    targets = start + np.arange(num_frames) / fps
    # Half a frame of slack so timestamps rounded by the container still count as on time.
    tolerance = 0.5 / fps
    out: Tensor | None = None
    filled = 0
    latest: Tensor | None = None
    for frame in container.decode(stream):
        t = float(frame.time)
        # Every target before this frame's time shows the previous frame.
        while filled < num_frames and targets[filled] + tolerance < t:
            if latest is None:
                raise ValueError(f"{path}: video starts at {t:.3f} s, after the clip start {start} s")
            out[:, filled] = latest
            filled += 1
        if filled == num_frames:
            break
        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        if out is None:
            # Preallocated channels-first: one strided copy per frame instead of a stack and a transpose.
            out = torch.empty((3, num_frames, *rgb.shape[1:]), dtype=torch.uint8)
        latest = rgb
    else:
        # The stream ended: the last frame covers targets up to half a frame after its time.
        while filled < num_frames and latest is not None and targets[filled] <= t + tolerance:
            out[:, filled] = latest
            filled += 1
    if out is None or filled < num_frames:
        raise ValueError(f"{path}: not enough video for {num_frames} frames at {fps} fps from {start} s")
    return out


def read_audio_track(
    container: av.container.InputContainer, rate: int, start: float, num_samples: int, max_pad: float, path: object
) -> Tensor:
    """Mono float32 audio at `rate` Hz: `num_samples` from `start` seconds, zero-padded by at most
    `max_pad` seconds where the track ends early (`path` names the source in errors)."""
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    for frame in container.decode(stream):
        if first_time is None:
            first_time = float(frame.time or 0.0)
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    if first_time is None:
        raise ValueError(f"{path}: the audio stream holds no samples")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    # A stream that starts late is shifted by prepending silence, so index 0 is time 0.
    lead = round(first_time * rate)
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, dtype=np.float32), samples])
    begin = round(start * rate)
    clip = samples[begin : begin + num_samples]
    missing = num_samples - clip.shape[0]
    if missing > max_pad * rate:
        raise ValueError(f"{path}: audio ends {missing / rate:.3f} s before the {num_samples / rate} s clip")
    if missing > 0:
        clip = np.concatenate([clip, np.zeros(missing, dtype=np.float32)])
    return torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)).clamp(-1.0, 1.0)
