"""The frozen encoders raw-mode loading and the latent stage use, loaded from local paths, and
the per-batch encoding both do (video and audio latents, trimmed text embeddings)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ovi_pl.encoders import AudioVAE, AudioVAEConfig, UMT5TextEncoder, VideoVAE


@dataclass(frozen=True)
class EncoderPaths:
    """Local checkpoint paths (nothing is downloaded); any of them may be left out.

    video_vae: a diffusers directory (Wan2.2-TI2V-5B-Diffusers/vae). audio_vae: MMAudio's
    `v1-16.pth` (the vocoder is not needed to encode). text_encoder: a transformers directory
    with the umT5 encoder; tokenizer: its tokenizer directory (default: text_encoder).
    text_len: prompts are encoded padded to this many tokens and trimmed back to their length.
    """

    video_vae: str | None = None
    audio_vae: str | None = None
    text_encoder: str | None = None
    tokenizer: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    text_len: int = 512
    audio_config: AudioVAEConfig = field(default_factory=AudioVAEConfig)


@dataclass
class Encoders:
    """Loaded encoders; the ones not needed by a run may be None."""

    video: VideoVAE | None = None
    audio: AudioVAE | None = None
    text: UMT5TextEncoder | None = None

    @classmethod
    def load(cls, paths: EncoderPaths, device: torch.device | str = "cpu") -> Encoders:
        dtype = getattr(torch, paths.dtype)
        return cls(
            video=VideoVAE.from_pretrained(paths.video_vae, dtype=dtype, device=device) if paths.video_vae else None,
            audio=AudioVAE.from_checkpoints(paths.audio_vae, None, cfg=paths.audio_config, dtype=dtype, device=device)
            if paths.audio_vae else None,
            text=UMT5TextEncoder.from_pretrained(paths.text_encoder, paths.tokenizer, dtype=dtype, device=device,
                                                 text_len=paths.text_len) if paths.text_encoder else None,
        )

    def to(self, device: torch.device) -> Encoders:
        """Move to `device` (VideoVAE keeps its statistics outside the module, so they move too)."""
        if self.video is not None and self.video.vae.device != device:
            self.video.vae.to(device)
            self.video.latents_mean = self.video.latents_mean.to(device)
            self.video.latents_std = self.video.latents_std.to(device)
        if self.audio is not None:
            self.audio.to(device)
        if self.text is not None and self.text.device != device:
            self.text.model.to(device)
        return self

    def require(self, what: str) -> None:
        if getattr(self, what) is None:
            names = {"video": "video_vae", "audio": "audio_vae", "text": "text_encoder"}
            raise ValueError(f"raw samples need a {what} encoder: give encoders.{names[what]} (a local path) "
                             f"or pass a loaded one")

    def encode_audio(self, waveforms: list[Tensor]) -> list[Tensor]:
        """[L_i, 20] float32 latents per waveform. One clip at a time: zero padding in a batch would
        leak into the last latents through the VAE's convolutions."""
        self.require("audio")
        device = self.audio.mel.mel_basis.device
        return [self.audio.encode(w.to(device).unsqueeze(0))[0] for w in waveforms]

    def encode_text(self, prompts: list[str]) -> list[Tensor]:
        """[tokens_i, D] float32 per prompt, the padding rows removed (stored unpadded in shards)."""
        self.require("text")
        out = self.text.encode(prompts)
        return [out.context[i, : int(n)].float() for i, n in enumerate(out.lengths)]
