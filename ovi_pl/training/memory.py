"""Per-GPU memory of a training run: a model of what FSDP2 holds, for bench/memory.py and the README.

Exact parts (from the parameter counts and dtypes; the tests check them against a fitted module):
weights, gradients, AdamW's two moments and the EMA, each sharded over every rank (data x context
parallel), so per GPU they are totals / ranks. Estimated parts: the all-gathered weights, in the
compute dtype, of the root unit (embeddings and heads, held through the step) and of the block
unit being computed and the one prefetched (two of the largest), and activations with per-block-pair checkpointing (each block pair's input kept for
backward, plus one block pair's working set while it is recomputed; no attention matrix with
flash/efficient SDPA), split over the context-parallel ranks. Activation figures need a GPU to be
measured; until then they are estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from ovi_pl.models.ovi.config import FusionConfig, TowerConfig
from ovi_pl.models.ovi.parallelize import sharding_units, towers

GB = 1e9


@dataclass(frozen=True)
class ParameterCounts:
    trainable: int
    frozen: int
    largest_unit: int  # parameters of the largest sharding unit inside a block
    root: int  # parameters outside the blocks (embeddings, heads): the root unit, gathered for the whole step


@dataclass(frozen=True)
class MemoryOptions:
    """frozen_bytes: bytes per frozen weight (4 fp32, 2 with `model.parallel.frozen_dtype: bfloat16`).
    optimizer_bytes: optimizer state per trainable weight (8 for AdamW's fp32 moments, 2 with
    `model.optimizer.name: adamw8bit`: 1 byte per moment, leaving out its per-256-value fp32 scales,
    0.03 bytes, and the fp32 moments it keeps for tensors under 4096 values). cpu_offload
    (`model.parallel.cpu_offload: true`): weights, gradients and optimizer state live in host memory
    (FSDP2's CPUOffloadPolicy); the GPU holds the gathered units and activations."""

    frozen_bytes: int = 4
    optimizer_bytes: int = 8
    cpu_offload: bool = False


def count_parameters(model: nn.Module) -> ParameterCounts:
    """Counts by `requires_grad` (apply the freezing preset first) of a model `parallelize` would shard."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    units = [sum(p.numel() for p in unit.parameters()) for tower in towers(model) for block in tower.blocks
             for unit in sharding_units(block)]
    root = trainable + frozen - sum(units)  # embeddings, heads, norms: the root unit
    return ParameterCounts(trainable, frozen, max(units), root)


def state_bytes(counts: ParameterCounts, options: MemoryOptions, ema: bool) -> dict[str, float]:
    """Whole-model bytes of each kind of state (divide by the rank count for one GPU's shard)."""
    return {
        "weights": 4 * counts.trainable + options.frozen_bytes * counts.frozen,
        "gradients": 4 * counts.trainable,
        "optimizer": options.optimizer_bytes * counts.trainable,
        "ema": 4 * counts.trainable if ema else 0,
    }


def measured_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None) -> dict[str, int]:
    """Weights, optimizer state and EMA read off a live (sharded) module on this rank (gradients
    exist only between backward and the optimizer step)."""

    def nbytes(tensors: list[torch.Tensor]) -> int:
        return sum(_held_bytes(_local(t)) for t in tensors)

    return {
        "weights": nbytes(list(model.parameters())),
        "optimizer": nbytes([v for state in optimizer.state.values() for k, v in state.items() if k != "step"]),
        "ema": nbytes(list(ema.parameters())) if ema is not None else 0,
    }


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _held_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds; a wrapper subclass (torchao's 8-bit optimizer state: uint8 codes and
    per-block scales) holds those of its inner tensors, not numel x its apparent dtype."""
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(_held_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def activation_bytes(
    cfg: FusionConfig, video_tokens: int, audio_tokens: int, batch: int, context_parallel: int, dtype_bytes: int = 2
) -> float:
    """Estimated activation peak per GPU with activation checkpointing per block pair."""
    kept = sum(t * tower.dim for t, tower in ((video_tokens, cfg.video), (audio_tokens, cfg.audio)))
    kept *= cfg.video.num_layers
    working = sum(_block_working_set(t, tower) for t, tower in ((video_tokens, cfg.video), (audio_tokens, cfg.audio)))
    return batch * (kept + working) * dtype_bytes / context_parallel


def _block_working_set(tokens: int, tower: TowerConfig) -> int:
    # Saved for one block's backward: norms, q/k/v/out of self- and cross-attention, fusion k/v,
    # residual sums (about 12 x dim per token) and the FFN's hidden input and activation (2 x ffn_dim).
    return tokens * (12 * tower.dim + 2 * tower.ffn_dim)


def per_gpu_bytes(
    counts: ParameterCounts,
    options: MemoryOptions,
    ema: bool,
    ranks: int,
    activations: float,
    compute_bytes: int = 2,
) -> dict[str, float]:
    """One GPU's memory by kind; `ranks` = every rank the states are sharded over."""
    sharded = {k: v / ranks for k, v in state_bytes(counts, options, ema).items()}
    if options.cpu_offload:
        sharded = dict.fromkeys(sharded, 0.0)
    gathered = (counts.root + 2 * counts.largest_unit) * compute_bytes if ranks > 1 or options.cpu_offload else 0
    result = {**sharded, "gathered": gathered, "activations": activations}
    result["total"] = sum(result.values())
    return result
