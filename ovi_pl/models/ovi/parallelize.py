"""FSDP2 sharding, activation checkpointing and torch.compile for Ovi models, kept apart from the model.

Fusion interleaves the two towers' blocks step by step (fusion.py), calling each block's
self-attention, cross-attention and FFN separately, so the sharding units are those three
submodules of every block: each is all-gathered just before it runs and freed after. What is
left (embeddings, heads, per-block modulation offsets and norm3) is small and sits in the root
unit. Parameters stay fp32 (the master weights); compute runs in `param_dtype` and gradients are
reduced in `reduce_dtype`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ovi_pl.models.ovi.fusion import OviFusionModel
from ovi_pl.models.ovi.tower import DiTBlock, DiTTower


def towers(model: OviFusionModel | DiTTower) -> list[DiTTower]:
    return [model.video, model.audio] if isinstance(model, OviFusionModel) else [model]


def sharding_units(block: DiTBlock) -> Iterator[nn.Module]:
    """The submodules of a block that the fusion forward calls one by one."""
    yield block.self_attn
    yield block.cross_attn
    yield block.ffn


def parallelize(
    model: OviFusionModel | DiTTower,
    mesh: DeviceMesh | None,
    param_dtype: torch.dtype = torch.bfloat16,
    reduce_dtype: torch.dtype = torch.float32,
    activation_checkpointing: bool = True,
    compile_blocks: bool = False,
) -> OviFusionModel | DiTTower:
    """Apply compile, activation checkpointing and FSDP2 in place (in that order, as torchtitan does).

    `mesh=None` skips sharding (single device); the other options still apply.
    """
    if compile_blocks:
        for tower in towers(model):
            for block in tower.blocks:
                for unit in sharding_units(block):
                    unit.compile()
    model.activation_checkpointing = activation_checkpointing
    if mesh is None:
        return model
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for tower in towers(model):
        for block in tower.blocks:
            for unit in sharding_units(block):
                fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model
