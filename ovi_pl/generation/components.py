"""What turns prompts into contexts and latents into media around the fusion model.

`GenerationEncoders` loads the frozen encoders from local paths (never downloads). Any path left
unset is replaced by a labelled preview stand-in, which is what the training-time sample
callback of the tiny CPU configs uses (they train on random latents, with no VAE or umT5):
- text: a fixed random embedding per prompt (seeded by its hash), like ovi-tiny's stand-in text;
- video: a fixed linear map of the 48 latent channels to RGB, upsampled to the frame grid;
- audio: a 220 Hz tone whose loudness follows each latent's RMS.
Previews show that sampling, muxing and logging work; they are not the model's real output.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from ovi_pl.data.geometry import AUDIO_SAMPLES_PER_LATENT, clip_seconds, video_latent_grid
from data_specs.latents import VIDEO_SPATIAL_STRIDE
from ovi_pl.encoders import AudioVAE, AudioVAEConfig, UMT5TextEncoder, VideoVAE
from ovi_pl.models.ovi import FusionConfig

AUDIO_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class ClipGeometry:
    """Requested clip: frames 1 + 4k at `fps`, sides multiples of 16 (Ovi: multiples of 32 near 720x1280).

    audio_latent_count: None derives it from the clip's span; a released checkpoint fixes it
    (`for_model`), e.g. 314 for Ovi 1.1's 10 s model where 241 frames would give 313.
    """

    height: int = 704
    width: int = 1280
    num_frames: int = 121
    fps: float = 24.0
    audio_latent_count: int | None = None

    def __post_init__(self) -> None:
        video_latent_grid(self.num_frames, self.height, self.width)  # raises naming the bad value
        if self.audio_latent_count is not None and self.audio_latent_count < 1:
            raise ValueError(f"geometry.audio_latent_count={self.audio_latent_count} must be >= 1, or null")

    def for_model(self, cfg: FusionConfig) -> ClipGeometry:
        """This geometry checked against what `cfg` samples, with a released checkpoint's audio length.

        Raises naming the geometry key to change: frames the model's patches do not tile, or a
        released checkpoint's frame count or frame area (within 10 %, as the reference allows) missed.
        """
        side = VIDEO_SPATIAL_STRIDE * cfg.video.patch_size[1]
        if self.height % side or self.width % side:
            raise ValueError(f"geometry.height/width {self.height}x{self.width} must be multiples of {side} "
                             f"for {cfg.name} (VAE stride x patch size)")
        clip = cfg.clip
        if clip is None:
            return self
        if self.num_frames != clip.num_frames:
            raise ValueError(f"geometry.num_frames={self.num_frames}, but {cfg.name} samples {clip.num_frames} frames; "
                             f"set geometry.num_frames: {clip.num_frames}")
        if abs(self.height * self.width - clip.frame_area) > 0.1 * clip.frame_area:
            height, width = frame_size_for_area(self.height, self.width, clip.frame_area)
            raise ValueError(f"geometry {self.height}x{self.width} is {self.height * self.width} pixels, more than 10 % "
                             f"from the {clip.frame_area} that {cfg.name} was trained on; at this aspect use "
                             f"geometry.height: {height}, geometry.width: {width}")
        return replace(self, audio_latent_count=clip.audio_latents)

    @property
    def video_latent_shape(self) -> tuple[int, int, int, int]:
        return (48, *video_latent_grid(self.num_frames, self.height, self.width))

    @property
    def audio_latents(self) -> int:
        """Audio over the clip's span rounded to 10 ms, as training clips are (121 frames -> 157)."""
        if self.audio_latent_count is not None:
            return self.audio_latent_count
        samples = round(clip_seconds(self.num_frames, self.fps) * AUDIO_SAMPLE_RATE)
        return samples // AUDIO_SAMPLES_PER_LATENT

    @property
    def audio_latent_shape(self) -> tuple[int, int]:
        return (self.audio_latents, 20)


def frame_size_for_area(height: int, width: int, area: int) -> tuple[int, int]:
    """(height, width) of about `area` pixels at the aspect of height x width, sides multiples of 32."""
    scale = math.sqrt(area / (height * width))
    return tuple(max(32, 32 * round(round(side * scale) / 32)) for side in (height, width))  # type: ignore[return-value]


class TextEncoder(Protocol):
    def __call__(self, prompts: list[str]) -> Tensor: ...  # [B, text_len, text_dim]


class VideoDecoder(Protocol):
    def decode(self, latents: Tensor) -> Tensor: ...  # [B, 3, F, H, W] in [-1, 1]


class AudioDecoder(Protocol):
    def decode(self, latents: Tensor) -> Tensor: ...  # [B, samples] at 16 kHz


@dataclass(frozen=True)
class GenerationEncoders:
    """Local paths of the frozen encoders; None selects the preview stand-in (see module docstring)."""

    video_vae: str | None = None  # diffusers dir, e.g. Wan2.2-TI2V-5B-Diffusers/vae
    audio_vae: str | None = None  # MMAudio v1-16.pth
    vocoder: str | None = None  # BigVGAN best_netG.pt
    audio_vae_config: AudioVAEConfig = field(default_factory=AudioVAEConfig)
    text_encoder: str | None = None  # umT5 encoder dir, e.g. Wan2.2-TI2V-5B-Diffusers/text_encoder
    tokenizer: str | None = None  # defaults to text_encoder
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if (self.audio_vae is None) != (self.vocoder is None):
            raise ValueError("give both audio_vae (v1-16.pth) and vocoder (best_netG.pt), or neither for previews")

    @property
    def previews(self) -> list[str]:
        return [n for n, p in (("text", self.text_encoder), ("video", self.video_vae), ("audio", self.audio_vae)) if p is None]

    def text(self, text_len: int, text_dim: int, device: torch.device | str = "cpu") -> TextEncoder:
        if self.text_encoder is None:
            return HashTextStandIn(text_len, text_dim)
        encoder = UMT5TextEncoder.from_pretrained(
            self.text_encoder, self.tokenizer, dtype=getattr(torch, self.dtype), device=device, text_len=text_len
        )
        width = encoder.model.config.d_model
        if width != text_dim:
            raise ValueError(f"text encoder {self.text_encoder} gives {width}-d embeddings; the model takes {text_dim}")
        return lambda prompts: encoder.encode(prompts).context.float()

    def video(self, device: torch.device | str = "cpu") -> VideoVAE | LatentPreviewVideo:
        if self.video_vae is None:
            return LatentPreviewVideo()
        return VideoVAE.from_pretrained(self.video_vae, dtype=getattr(torch, self.dtype), device=device)

    def audio(self, device: torch.device | str = "cpu") -> AudioVAE | LatentPreviewAudio:
        if self.audio_vae is None:
            return LatentPreviewAudio()
        return AudioVAE.from_checkpoints(
            self.audio_vae, self.vocoder, cfg=self.audio_vae_config, dtype=getattr(torch, self.dtype), device=device
        )


class HashTextStandIn:
    """A fixed random context per prompt: distinct prompts give distinct, reproducible contexts."""

    def __init__(self, text_len: int, text_dim: int) -> None:
        self.text_len, self.text_dim = text_len, text_dim

    def __call__(self, prompts: list[str]) -> Tensor:
        out = torch.zeros(len(prompts), self.text_len, self.text_dim)
        for i, prompt in enumerate(prompts):
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little") % (2**63 - 1)
            tokens = min(self.text_len, len(prompt.split()) + 1)
            out[i, :tokens] = torch.randn(tokens, self.text_dim, generator=torch.Generator().manual_seed(seed))
        return out


class LatentPreviewVideo:
    """Latents -> RGB through a fixed random 48 -> 3 projection, at the VAE's output geometry."""

    def decode(self, latents: Tensor) -> Tensor:
        channels = latents.shape[1]
        proj = torch.randn(3, channels, generator=torch.Generator().manual_seed(0)) / math.sqrt(channels)
        rgb = torch.einsum("oc,bcfhw->bofhw", proj, latents.float().cpu())
        b, _, f, h, w = rgb.shape
        rgb = F.interpolate(rgb, size=(1 + 4 * (f - 1), 16 * h, 16 * w), mode="nearest")
        return torch.tanh(rgb)


class LatentPreviewAudio:
    """Latents -> a 220 Hz tone at 16 kHz with each latent's RMS as its loudness (512 samples each)."""

    def decode(self, latents: Tensor) -> Tensor:
        envelope = latents.float().cpu().square().mean(-1).sqrt()  # [B, L]
        envelope = envelope / envelope.amax(dim=1, keepdim=True).clamp_min(1e-6)
        envelope = envelope.repeat_interleave(AUDIO_SAMPLES_PER_LATENT, dim=1)
        t = torch.arange(envelope.shape[1]) / AUDIO_SAMPLE_RATE
        return 0.5 * envelope * torch.sin(2 * math.pi * 220.0 * t)
