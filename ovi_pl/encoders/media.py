"""An aligned audio-video clip as tensors for the encoders: N frames at a fixed rate and the audio over
the same span, mono at the audio VAE's rate. The decoding is the media layer's
(`ovi_pl.media.av_clip.read_video`, `ovi_pl.media.audio.decode_audio`); this only wraps the arrays."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ovi_pl.media.audio import decode_audio
from ovi_pl.media.av_clip import Source, read_video


@dataclass(frozen=True)
class AVClip:
    video: Tensor  # uint8 [3, F, H, W]
    audio: Tensor  # float32 [samples], mono, in [-1, 1]
    fps: float
    sample_rate: int
    start: float  # seconds into the file


def read_av_clip(
    source: Source,
    num_frames: int = 121,
    fps: float = 24.0,
    sample_rate: int = 16_000,
    start: float = 0.0,
    audio_seconds: float | None = None,
    max_audio_pad: float = 0.1,
    size: tuple[int, int] | None = None,
) -> AVClip:
    """Frames at times start + i / fps (the latest frame shown at each time) and the audio from `start`,
    of a file or of its bytes; `size` (height, width) resizes and centre-crops the frames while decoding.

    audio_seconds defaults to num_frames / fps rounded to 10 ms, which gives Ovi's 5.04 s
    (80640 samples at 16 kHz) for 121 frames at 24 fps. Audio that ends up to `max_audio_pad`
    seconds early (containers often cut it a few ms short of the video) is padded with silence.
    """
    if audio_seconds is None:
        audio_seconds = round(num_frames / fps, 2)
    video = read_video(source, num_frames, fps, start, size)
    audio = decode_audio(source, sample_rate, start, audio_seconds, max_audio_pad)
    return AVClip(video=torch.from_numpy(video), audio=torch.from_numpy(audio), fps=fps, sample_rate=sample_rate,
                  start=start)
