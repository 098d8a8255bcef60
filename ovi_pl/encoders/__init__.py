"""Frozen encoders that turn media into what the towers train on.

- `VideoVAE`: Wan2.2 VAE (diffusers), frames [B, 3, F, H, W] <-> normalised latents [B, 48, f, h, w].
- `AudioVAE`: MMAudio 16 kHz mel VAE + BigVGAN vocoder, waveform [B, S] <-> latents [B, L, 20].
- `UMT5TextEncoder`: umT5-xxl encoder, prompts -> [B, 512, 4096] zero-padded context.
- `read_av_clip`: an aligned video/audio clip as tensors (decoded by `ovi_pl.media`).
"""

from ._loading import CheckpointMismatchError
from .audio_vae import AudioVAE, AudioVAEConfig
from .bigvgan import BigVGANConfig, BigVGANVocoder
from .media import AVClip, read_av_clip
from .mel import LogMelSpectrogram, MelConfig
from .mmaudio_vae import MMAudioVAE, MMAudioVAEConfig
from .text import TextEmbeddings, UMT5TextEncoder
from .video_vae import WAN22_VAE_ARCH, VideoVAE

__all__ = [
    "AVClip",
    "AudioVAE",
    "AudioVAEConfig",
    "BigVGANConfig",
    "BigVGANVocoder",
    "CheckpointMismatchError",
    "LogMelSpectrogram",
    "MMAudioVAE",
    "MMAudioVAEConfig",
    "MelConfig",
    "TextEmbeddings",
    "UMT5TextEncoder",
    "VideoVAE",
    "WAN22_VAE_ARCH",
    "read_av_clip",
]
