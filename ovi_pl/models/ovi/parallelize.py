"""FSDP2 sharding, activation checkpointing and torch.compile for Ovi models, kept apart from the model.

Fusion interleaves the two towers' blocks step by step (fusion.py), calling each block's
self-attention, cross-attention and FFN separately, so the sharding units are those three
submodules of every block: each is all-gathered just before it runs and freed after. What is
left (embeddings, heads, per-block modulation offsets and norm3) is small and sits in the root
unit. Parameters stay fp32 (the master weights); compute runs in `param_dtype` and gradients are
reduced in `reduce_dtype`.

Context parallel (Ulysses, context_parallel.py) splits every sample's tokens over the ranks of the
mesh's "context_parallel" dimension. Those ranks hold the same parameters and each computes part
of every gradient, so FSDP2 shards over, and reduces across, data and context ranks together.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from ovi_pl.models.ovi.context_parallel import SequenceShards, UlyssesAttention
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
    cpu_offload: bool = False,
) -> OviFusionModel | DiTTower:
    """Apply context parallel, compile, activation checkpointing and FSDP2 in place (in that
    order, as torchtitan does).

    mesh: None skips sharding (single device; the other options still apply), a 1-D mesh shards
    over its ranks, a 2-D ("data_parallel", "context_parallel") mesh also splits tokens over the
    second dimension. cpu_offload: every unit's shards, and their gradients, live in host memory
    (materialise the model on the CPU); each unit is copied to the mesh's device, cast to
    `param_dtype` and all-gathered before it runs, whatever dtype its shards are stored in.
    """
    if mesh is not None and mesh.ndim == 2:
        context = mesh["context_parallel"]
        if context.size() > 1:
            apply_context_parallel(model, context)
            mesh = mesh._flatten("data_context")
        else:
            mesh = mesh["data_parallel"]
    if compile_blocks:
        for tower in towers(model):
            for block in tower.blocks:
                for unit in sharding_units(block):
                    unit.compile()
    model.activation_checkpointing = activation_checkpointing
    if mesh is None:
        return model
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    # Pinned host memory makes the copies to the GPU asynchronous; a CPU mesh has no device to pin for.
    offload = CPUOffloadPolicy(pin_memory=mesh.device_type != "cpu") if cpu_offload else OffloadPolicy()
    for tower in towers(model):
        for block in tower.blocks:
            for unit in sharding_units(block):
                fully_shard(unit, mesh=mesh, mp_policy=policy, offload_policy=offload)
    # The root leaves its inputs as given: each tower casts latents and text to its compute dtype
    # itself, and the timestep must reach the time embedding unrounded (bf16 turns 995.9 into 996).
    root_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype, cast_forward_inputs=False)
    fully_shard(model, mesh=mesh, mp_policy=root_policy, offload_policy=offload)
    return model


def apply_context_parallel(model: OviFusionModel | DiTTower, mesh: DeviceMesh) -> None:
    """Split every tower's tokens over the ranks of a 1-D `mesh` and make attention over tokens Ulysses."""
    size = mesh.size()
    for tower in towers(model):
        if tower.cfg.num_heads % size:
            raise ValueError(
                f"model.parallel.context_parallel={size} must divide the {tower.cfg.num_heads} attention heads"
            )
    shards = SequenceShards(mesh.get_group(), mesh.get_local_rank(), size)
    for tower in towers(model):
        tower.token_sharding = shards
        for block in tower.blocks:
            block.self_attn.attention = UlyssesAttention(shards.group, size)
            if block.cross_attn.has_fusion:
                block.cross_attn.fusion_attention = UlyssesAttention(shards.group, size)
