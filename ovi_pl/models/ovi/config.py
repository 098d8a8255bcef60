"""Model geometry of the Ovi twin-tower DiT and the registry of named configs.

Every model this project builds comes from a name in `MODEL_CONFIGS`; tests check that each
shipped name builds. The released geometry (`ovi-11b`) follows ../shared/DESIGN.md section 1. The
released checkpoints share it (same keys) and differ in the clip they sample, which their
`ReleasedClip` records: `ovi-11b-720x720-5s` (Ovi 1.0's model.safetensors), `ovi-11b-960x960-5s`
and `ovi-11b-960x960-10s` (Ovi 1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from data_specs.captions import CaptionStyle
from data_specs.latents import VIDEO_SPATIAL_STRIDE, VIDEO_TEMPORAL_STRIDE

Modality = Literal["video", "audio"]


@dataclass(frozen=True)
class TowerConfig:
    """Geometry of one DiT tower. Video and audio towers share the class and differ in embedding."""

    modality: Modality
    in_channels: int
    out_channels: int
    dim: int = 3072
    ffn_dim: int = 14336
    num_heads: int = 24
    num_layers: int = 30
    # Video: 3D patch (t, h, w) of a Conv3d. Audio latents are not patchified.
    patch_size: tuple[int, ...] = (1, 2, 2)
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    eps: float = 1e-6
    rope_theta: float = 10000.0
    # Audio only: the temporal RoPE frequencies are multiplied by this so that audio latents
    # (31.25/s) and video latent frames (about 6/s) turn at the same rate per second.
    temporal_rope_scale: float = 1.0
    # Audio only: hidden width requested from the ConvMLP of the patch embedding, before the
    # SwiGLU 2/3 reduction and rounding up to `audio_embed_multiple_of`.
    audio_embed_hidden: int | None = None
    audio_embed_multiple_of: int = 256
    audio_embed_kernel: int = 7

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim={self.head_dim} must be even and >= 6 for the 3-axis RoPE")
        if self.modality == "audio" and self.patch_size != (1,):
            raise ValueError(f"audio towers take patch_size=(1,), got {self.patch_size}")
        if self.modality == "video" and len(self.patch_size) != 3:
            raise ValueError(f"video towers take a 3D patch_size, got {self.patch_size}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def audio_embed_hidden_dim(self) -> int:
        """Channel width of the audio ConvMLP after SwiGLU's 2/3 rule and rounding."""
        requested = self.audio_embed_hidden or 4 * self.dim
        hidden = int(2 * requested / 3)
        m = self.audio_embed_multiple_of
        return m * ((hidden + m - 1) // m)


@dataclass(frozen=True)
class ReleasedClip:
    """The clip a released checkpoint samples, as the reference's per-model spec gives it.

    frame_area: pixels per frame; any aspect, sides multiples of 32 (704x704 for 720x720, 960x960,
    704x1280). audio_latents: fixed by the checkpoint, not derived from the frame count (the 10 s
    model takes 314 = 2 x 157, where 241 frames of audio would give 313).
    """

    checkpoint_file: str
    frame_area: int
    num_frames: int  # at 24 fps
    audio_latents: int
    caption_style: CaptionStyle

    @property
    def video_latent_frames(self) -> int:
        return (self.num_frames - 1) // VIDEO_TEMPORAL_STRIDE + 1

    def video_tokens(self, height: int, width: int, patch_size: tuple[int, ...]) -> int:
        """Video tokens per sample at a frame size: latent frames x latent pixels / spatial patch."""
        pt, ph, pw = patch_size
        grid = (self.video_latent_frames // pt, height // VIDEO_SPATIAL_STRIDE // ph, width // VIDEO_SPATIAL_STRIDE // pw)
        return grid[0] * grid[1] * grid[2]


@dataclass(frozen=True)
class FusionConfig:
    """A named twin-tower model: one video and one audio tower of the same depth and width."""

    name: str
    video: TowerConfig
    audio: TowerConfig
    # Block whose unconditional pass is skipped for skip-layer guidance (DESIGN.md section 2).
    skip_layer_guidance_block: int = 11
    description: str = ""
    clip: ReleasedClip | None = None  # set for released checkpoints

    def __post_init__(self) -> None:
        if self.video.modality != "video" or self.audio.modality != "audio":
            raise ValueError(f"{self.name}: towers must be (video, audio)")
        for attr in ("dim", "num_heads", "num_layers"):
            if getattr(self.video, attr) != getattr(self.audio, attr):
                raise ValueError(f"{self.name}: towers differ in {attr}; block-wise fusion needs them equal")


def _ovi_pair(name: str, description: str, clip: ReleasedClip | None = None, **geometry: object) -> FusionConfig:
    video = TowerConfig(modality="video", in_channels=48, out_channels=48, patch_size=(1, 2, 2), **geometry)
    audio = TowerConfig(
        modality="audio",
        in_channels=20,
        out_channels=20,
        patch_size=(1,),
        temporal_rope_scale=0.19676,
        **geometry,
    )
    return FusionConfig(name=name, video=video, audio=audio, description=description, clip=clip)


MODEL_CONFIGS: dict[str, FusionConfig] = {
    cfg.name: cfg
    for cfg in (
        _ovi_pair("ovi-11b", "Released Ovi geometry: two 30-layer 3072-wide towers, 11.66 B parameters."),
        _ovi_pair(
            "ovi-11b-720x720-5s",
            "Ovi 1.0's checkpoint: 5 s clips of about 720x720 pixels, <AUDCAP> captions.",
            ReleasedClip("model.safetensors", 720 * 720, 121, 157, "audcap"),
        ),
        _ovi_pair(
            "ovi-11b-960x960-5s",
            "Ovi 1.1: 5 s clips of about 960x960 pixels, 'Audio: ...' captions.",
            ReleasedClip("model_960x960.safetensors", 960 * 960, 121, 157, "audio_prefix"),
        ),
        _ovi_pair(
            "ovi-11b-960x960-10s",
            "Ovi 1.1: 10 s clips of about 960x960 pixels (61 latent frames, 314 audio latents), 'Audio: ...' captions.",
            ReleasedClip("model_960x960_10s.safetensors", 960 * 960, 241, 314, "audio_prefix"),
        ),
        _ovi_pair(
            "ovi-small",
            "A 12-layer 1024-wide pair for single-GPU experiments.",
            dim=1024,
            ffn_dim=4096,
            num_heads=8,
            num_layers=12,
        ),
        _ovi_pair(
            "ovi-tiny",
            "A 2-layer 64-wide pair for CPU tests and the demo (umT5 replaced by a 32-d encoder).",
            dim=64,
            ffn_dim=128,
            num_heads=4,
            num_layers=2,
            text_dim=32,
            text_len=16,
            freq_dim=32,
        ),
    )
}


def get_model_config(name: str, **overrides: object) -> FusionConfig:
    """Look up a named config; `overrides` replace fields of both towers (e.g. num_layers=4)."""
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; choose one of {sorted(MODEL_CONFIGS)}") from None
    if not overrides:
        return cfg
    return replace(cfg, video=replace(cfg.video, **overrides), audio=replace(cfg.audio, **overrides))
