"""Precomputed `.npy` members: the well-known ones, their dtypes and shapes.

Shapes follow the encoders the towers consume: Wan2.2 VAE video latents (48 channels, 4x temporal
and 16x spatial compression), MMAudio 16 kHz VAE audio latents (20 channels, 31.25 per second),
umT5-xxl text embeddings (4096-d, at most 512 tokens).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# numpy has no bfloat16; bf16 encoder outputs are stored as float16 or float32.
LATENT_DTYPES: tuple[str, ...] = ("float16", "float32")

VIDEO_LATENT_CHANNELS = 48
VIDEO_TEMPORAL_STRIDE = 4
VIDEO_SPATIAL_STRIDE = 16
AUDIO_LATENT_CHANNELS = 20
AUDIO_LATENTS_PER_SECOND = 31.25
TEXT_EMBED_DIM = 4096
TEXT_MAX_TOKENS = 512


@dataclass(frozen=True)
class LatentSpec:
    """What a well-known latents member must look like. `dims` names each axis; `fixed` pins some."""

    name: str
    dims: tuple[str, ...]
    fixed: dict[int, int] = field(default_factory=dict)
    max_size: dict[int, int] = field(default_factory=dict)
    dtypes: tuple[str, ...] = LATENT_DTYPES
    description: str = ""

    def problems(self, dtype: str, shape: tuple[int, ...]) -> list[str]:
        """Why a declared (dtype, shape) does not fit this spec; empty if it does."""
        out: list[str] = []
        layout = "[" + ", ".join(self.dims) + "]"
        if dtype not in self.dtypes:
            out.append(f"{self.name}: dtype {dtype} is not one of {list(self.dtypes)}")
        if len(shape) != len(self.dims):
            out.append(f"{self.name}: shape {list(shape)} has rank {len(shape)}, expected {layout}")
            return out
        for axis, size in self.fixed.items():
            if shape[axis] != size:
                out.append(f"{self.name}: axis {self.dims[axis]} is {shape[axis]}, expected {size} (layout {layout})")
        for axis, limit in self.max_size.items():
            if shape[axis] > limit:
                out.append(f"{self.name}: axis {self.dims[axis]} is {shape[axis]}, at most {limit} allowed")
        if any(s <= 0 for s in shape):
            out.append(f"{self.name}: shape {list(shape)} has an empty axis")
        return out


LATENT_SPECS: dict[str, LatentSpec] = {
    spec.name: spec
    for spec in (
        LatentSpec("video_latents.npy", ("C", "T", "H", "W"), fixed={0: VIDEO_LATENT_CHANNELS},
                   description="Wan2.2 VAE latents, T = (num_frames - 1) // 4 + 1, H = height / 16, W = width / 16"),
        LatentSpec("audio_latents.npy", ("L", "C"), fixed={1: AUDIO_LATENT_CHANNELS},
                   description="MMAudio 16 kHz VAE latents, about 31.25 per second (157 for 5.04 s)"),
        LatentSpec("text_embedding.npy", ("tokens", "D"), fixed={1: TEXT_EMBED_DIM},
                   max_size={0: TEXT_MAX_TOKENS},
                   description="umT5-xxl encoder output for the caption, unpadded"),
    )
}


def expected_video_latent_grid(num_frames: int, height: int, width: int) -> tuple[int, int, int] | None:
    """(T, H, W) of the Wan2.2 VAE latents of a clip, or None if its size is not a multiple of 16."""
    if height % VIDEO_SPATIAL_STRIDE or width % VIDEO_SPATIAL_STRIDE:
        return None
    return ((num_frames - 1) // VIDEO_TEMPORAL_STRIDE + 1, height // VIDEO_SPATIAL_STRIDE, width // VIDEO_SPATIAL_STRIDE)
