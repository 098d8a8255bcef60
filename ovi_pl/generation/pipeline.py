"""Prompts (and optional first images) -> sampled latents -> decoded clips.

The steps are separate functions because the training callback runs them on different ranks:
text encoding and sampling on every rank (sharded modules need every rank's forward pass),
decoding and writing on rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn

from ovi_pl.media.audio import load_audio
from ovi_pl.media.av_clip import read_video, resize_for_crop
from ovi_pl.encoders import AudioVAE, VideoVAE
from ovi_pl.data.geometry import AUDIO_SAMPLES_PER_LATENT
from ovi_pl.generation.components import (
    AUDIO_SAMPLE_RATE,
    AudioDecoder,
    ClipGeometry,
    TextEncoder,
    VideoDecoder,
)
from ovi_pl.generation.sampler import Conditioning, SamplerConfig, initial_noise, sample


@dataclass
class GeneratedClip:
    frames: Tensor  # uint8 [3, F, H, W]
    audio: Tensor  # float32 [samples], mono, 16 kHz
    fps: float
    sample_rate: int = AUDIO_SAMPLE_RATE


def encode_prompts(text: TextEncoder, prompts: list[str], cfg: SamplerConfig) -> Conditioning:
    """Contexts for the prompts and, repeated per prompt, each modality's negative prompt."""
    positive = text(prompts)
    negatives = text([cfg.video_negative_prompt, cfg.audio_negative_prompt])
    n = len(prompts)
    # Both towers see the same prompt embedding (the towers embed it with their own MLPs).
    return Conditioning(
        video=positive,
        audio=positive,
        video_negative=negatives[:1].expand(n, -1, -1),
        audio_negative=negatives[1:].expand(n, -1, -1),
    )


def load_image(path: str | os.PathLike[str], geometry: ClipGeometry) -> Tensor:
    """An image resized to cover the clip's frame and centre-cropped: float [1, 3, 1, H, W] in [-1, 1].
    Turned as its EXIF orientation says: cameras and phones store photos sideways and say so there."""
    with Image.open(path) as stored:
        image = ImageOps.exif_transpose(stored).convert("RGB")
    size = resize_for_crop(image.height, image.width, (geometry.height, geometry.width))
    image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    top, left = (size[0] - geometry.height) // 2, (size[1] - geometry.width) // 2
    image = image.crop((left, top, left + geometry.width, top + geometry.height))
    pixels = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0
    return pixels[None, :, None]


def encode_first_frame(vae: VideoVAE, image: str | os.PathLike[str], geometry: ClipGeometry) -> Tensor:
    """The clean latent frame 0 for image-to-video: [1, 48, 1, H/16, W/16]."""
    if not isinstance(vae, VideoVAE):
        raise ValueError("image-to-video needs the real video VAE to encode the image; set encoders.video_vae")
    return vae.encode(load_image(image, geometry))


def encode_given_video(vae: VideoVAE, video: str | os.PathLike[str], geometry: ClipGeometry) -> Tensor:
    """The clean video latent [1, 48, F', H', W'] of `video`'s first geometry.num_frames frames at
    geometry.fps, resized to cover the frame and centre-cropped (video-to-audio)."""
    if not isinstance(vae, VideoVAE):
        raise ValueError("video-to-audio needs the real video VAE to encode the video; set encoders.video_vae")
    frames = read_video(video, geometry.num_frames, geometry.fps, size=(geometry.height, geometry.width))
    return vae.encode(torch.from_numpy(frames)[None])


def encode_given_audio(vae: AudioVAE, audio: str | os.PathLike[str], geometry: ClipGeometry) -> Tensor:
    """The clean audio latent [1, L, 20] of `audio`'s first geometry.audio_latents latents at 16 kHz
    mono, padded with silence when it is shorter (audio-to-video)."""
    if not isinstance(vae, AudioVAE):
        raise ValueError("audio-to-video needs the real audio VAE to encode the audio; set encoders.audio_vae "
                         "and encoders.vocoder")
    samples = geometry.audio_latents * AUDIO_SAMPLES_PER_LATENT
    wave = torch.from_numpy(load_audio(audio, AUDIO_SAMPLE_RATE, duration_s=samples / AUDIO_SAMPLE_RATE))
    wave = torch.nn.functional.pad(wave[:samples], (0, max(0, samples - wave.shape[0])))
    return vae.encode(wave[None])[:, : geometry.audio_latents]


def generate_latents(
    model: nn.Module,
    cond: Conditioning,
    geometry: ClipGeometry,
    cfg: SamplerConfig,
    device: torch.device | str,
    first_frame: Tensor | None = None,
    num_layers: int | None = None,
    dtype: torch.dtype | None = None,
    given_video: Tensor | None = None,
    given_audio: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Latents for a batch of prompts; seed cfg.seed + i for prompt i, so a clip does not depend on
    which prompts share its batch. given_video / given_audio [1, ...]: a clean latent every prompt
    is conditioned on (video-to-audio / audio-to-video)."""
    videos, audios = [], []
    for i in range(cond.video.shape[0]):
        video_noise, audio_noise = initial_noise(
            1, geometry.video_latent_shape, geometry.audio_latent_shape, cfg.seed + i, device
        )
        frame = None if first_frame is None else first_frame[i : i + 1]
        v, a = sample(
            model, video_noise, audio_noise, cond.select(slice(i, i + 1)).to(device, dtype), cfg,
            first_frame=frame, num_layers=num_layers, dtype=dtype, given_video=given_video, given_audio=given_audio,
        )
        videos.append(v)
        audios.append(a)
    return torch.cat(videos), torch.cat(audios)


def decode_clips(
    video_decoder: VideoDecoder, audio_decoder: AudioDecoder, video: Tensor, audio: Tensor, fps: float
) -> list[GeneratedClip]:
    frames = VideoVAE.to_uint8(video_decoder.decode(video)).cpu()
    waveforms = audio_decoder.decode(audio).float().cpu()
    return [GeneratedClip(frames=f, audio=w, fps=fps) for f, w in zip(frames, waveforms, strict=True)]


def clip_file_name(index: int, prompt: str, max_words: int = 6) -> str:
    """`003_a-concert-stage-glows.mp4`: sortable by prompt index, readable in an artifact browser."""
    words = "".join(c if c.isalnum() else " " for c in prompt.lower()).split()[:max_words]
    return f"{index:03d}_{'-'.join(words) or 'clip'}.mp4"


def write_clip(clip: GeneratedClip, path: str | os.PathLike[str]) -> Path:
    from ovi_pl.generation.media_io import write_av_mp4

    return write_av_mp4(path, clip.frames, clip.audio, clip.fps, clip.sample_rate)
