"""Sizes of a training batch, for Lightning's ThroughputMonitor (samples/s and tokens/s)."""

from __future__ import annotations

from torch import Tensor


def batch_size(batch: dict[str, Tensor]) -> int:
    return int(batch["audio_latents"].shape[0])


def latent_tokens(batch: dict[str, Tensor]) -> int:
    """Real latent positions in the batch: audio latents plus video latent elements per channel / 4."""
    tokens = int(batch["audio_length"].sum())
    if "video_latents" in batch:
        video = batch["video_latents"]
        # One token per 1x2x2 patch of the latent grid.
        tokens += video.shape[0] * video.shape[2] * (video.shape[3] // 2) * (video.shape[4] // 2)
    return tokens
