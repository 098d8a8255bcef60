"""Batching materialised samples of one bucket: equal-shape tensors stacked, sequences zero-padded."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def stack(items: list[Tensor]) -> Tensor:
    """Equal-shape tensors -> [B, ...]; a batch of one is a view, not a copy."""
    return items[0].unsqueeze(0) if len(items) == 1 else torch.stack(items)


def pad_sequences(items: list[Tensor]) -> tuple[Tensor, Tensor]:
    """[L_i, ...] tensors -> ([B, max L, ...] zero-padded, lengths [B] int64)."""
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.int64)
    if all(t.shape == items[0].shape for t in items):
        return stack(items), lengths
    out = items[0].new_zeros((len(items), int(lengths.max()), *items[0].shape[1:]))
    for i, t in enumerate(items):
        out[i, : t.shape[0]] = t
    return out, lengths


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch of one bucket. Latent samples give the training batch itself; raw samples give
    `frames` (a list of [3, F, H, W] uint8) / `waveform` (+ `waveform_length`) for the encoders, and `captions` unless every
    sample brought its text embedding."""
    batch: dict[str, Any] = {"keys": [s["key"] for s in samples]}
    if "video_latents" in samples[0]:
        batch["video_latents"] = stack([s["video_latents"] for s in samples])
    if "frames" in samples[0]:
        # Stacked on the training device (ShardDataModule.encode_raw): a batch of raw clips is hundreds
        # of MB, and one more CPU copy of it costs about a tenth of decoding it.
        batch["frames"] = [s["frames"] for s in samples]
    if "audio_latents" in samples[0]:
        batch["audio_latents"], batch["audio_length"] = pad_sequences([s["audio_latents"] for s in samples])
    if "waveform" in samples[0]:
        batch["waveform"], batch["waveform_length"] = pad_sequences([s["waveform"] for s in samples])
    if all("text_embedding" in s for s in samples):
        batch["text_embedding"], _ = pad_sequences([s["text_embedding"] for s in samples])
    else:
        # Mixed batches re-encode every prompt, so one batch never mixes two text encoders.
        batch["captions"] = [s.get("caption") for s in samples]
        if any(c is None for c in batch["captions"]):
            raise ValueError("a sample has a text embedding but no caption to re-encode")
    return batch
