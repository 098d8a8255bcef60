"""Resizing for the centre crop, latent grids and clip lengths (the crop size rule is data_specs.geometry)."""
from __future__ import annotations

from data_specs.latents import VIDEO_SPATIAL_STRIDE, VIDEO_TEMPORAL_STRIDE

AUDIO_SAMPLES_PER_LATENT = 512  # 16 kHz / 31.25


def video_latent_grid(num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(T, H, W) of the Wan2.2 VAE latents of a clip; the clip must fit the VAE's strides."""
    if (num_frames - 1) % VIDEO_TEMPORAL_STRIDE:
        raise ValueError(f"num_frames must be 1 + {VIDEO_TEMPORAL_STRIDE}k, got {num_frames}")
    if height % VIDEO_SPATIAL_STRIDE or width % VIDEO_SPATIAL_STRIDE:
        raise ValueError(f"frame size {width}x{height} is not a multiple of {VIDEO_SPATIAL_STRIDE}")
    return (num_frames - 1) // VIDEO_TEMPORAL_STRIDE + 1, height // VIDEO_SPATIAL_STRIDE, width // VIDEO_SPATIAL_STRIDE


def clip_seconds(num_frames: int, fps: float) -> float:
    """Audio span of a video clip: num_frames / fps to 10 ms, as Ovi does (121 frames -> 5.04 s)."""
    return round(num_frames / fps, 2)


