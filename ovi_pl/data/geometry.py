"""Training resolutions: which frame size a clip is resized and cropped to, and its latent shape."""
from __future__ import annotations

import math
from collections.abc import Sequence

from data_specs.latents import VIDEO_SPATIAL_STRIDE, VIDEO_TEMPORAL_STRIDE

# Ovi trains at 720x1280-sized areas (704x1280, 1280x704, 960x960 are all within 3 % of it).
DEFAULT_TARGET_AREA = 720 * 1280
SIDE_MULTIPLE = 32
AUDIO_SAMPLES_PER_LATENT = 512  # 16 kHz / 31.25


def target_size(
    height: int,
    width: int,
    target_area: int = DEFAULT_TARGET_AREA,
    multiple: int = SIDE_MULTIPLE,
    buckets: Sequence[Sequence[int]] | None = None,
) -> tuple[int, int]:
    """(height, width) to resize-and-centre-crop a `height` x `width` clip to.

    With `buckets` ([[h, w], ...]) the bucket whose aspect ratio is closest (in log space) wins;
    otherwise the size of about `target_area` pixels with the clip's aspect ratio, both sides
    rounded to multiples of `multiple` (704x1344 at 720x1280 area gives 704x1312).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size {width}x{height} is empty")
    aspect = math.log(height / width)
    if buckets:
        return tuple(min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - aspect)))  # type: ignore[return-value]
    ratio = height / width
    h = max(multiple, round(math.sqrt(target_area * ratio) / multiple) * multiple)
    w = max(multiple, round(math.sqrt(target_area / ratio) / multiple) * multiple)
    return h, w


def resize_for_crop(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """The smallest size with the clip's aspect ratio that covers `target`; centre-cropping it gives `target`."""
    scale = max(target[0] / height, target[1] / width)
    return max(target[0], math.ceil(height * scale - 1e-6)), max(target[1], math.ceil(width * scale - 1e-6))


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


