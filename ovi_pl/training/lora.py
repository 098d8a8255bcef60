"""LoRA fine-tuning of the fusion model's attention projections with peft.

Adapters are injected into the model built on the meta device, before FSDP2 sharding, so each
adapter is sharded with the attention module it belongs to. Only adapter weights train; the
base weights stay bit-identical. Injection renames a wrapped layer's weight to
`....q.base_layer.weight`, so checkpoints in the plain layout (Ovi, Wan2.2, stage-1 towers) are
loaded under `plain_layer_names`, and exports merge the adapters back (`merge_lora`) so that
what is written is a plain model in Ovi's format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

ADAPTER = "default"
# Every projection of self-attention and of text + fusion cross-attention, in both towers.
ATTENTION_PROJECTIONS: tuple[str, ...] = tuple(
    f"{attn}.{proj}" for attn in ("self_attn", "cross_attn") for proj in ("q", "k", "v", "o")
) + ("cross_attn.k_fusion", "cross_attn.v_fusion")


@dataclass(frozen=True)
class LoraOptions:
    """rank r, scaling alpha / r; target_modules are module-name suffixes (peft's matching)."""

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ATTENTION_PROJECTIONS

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"model.lora.rank={self.rank} must be >= 1, e.g. 16")
        if self.alpha <= 0:
            raise ValueError(f"model.lora.alpha={self.alpha} must be > 0 (the adapters' scale is alpha / rank)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.lora.dropout={self.dropout} must be in [0, 1)")
        if not self.target_modules:
            raise ValueError("model.lora.target_modules is empty; name at least one projection, e.g. self_attn.q")


# Training checkpoints store the module's hyper-parameters, these options included, and are
# read back with torch.load(weights_only=True).
torch.serialization.add_safe_globals([LoraOptions])


def inject_lora(model: nn.Module, options: LoraOptions | Mapping[str, Any]) -> nn.Module:
    """Wrap the target projections with LoRA adapters (B = 0: outputs unchanged) and make only
    the adapters trainable. Works on a meta-device model. `options` may be the dict a training
    checkpoint's hyper-parameters hold."""
    if not isinstance(options, LoraOptions):
        options = LoraOptions(**{**options, "target_modules": tuple(options.get("target_modules", ATTENTION_PROJECTIONS))})
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
    )
    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as err:
        raise ValueError(f"lora.target_modules {list(options.target_modules)} match no layer of the model: {err}") from None
    freeze_all_but_lora(model)
    return model


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLayer]]:
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def freeze_all_but_lora(model: nn.Module) -> tuple[int, int]:
    """requires_grad only on adapter weights; returns (trainable, total) parameter counts."""
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(is_lora_parameter(name))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


@torch.no_grad()
def reset_lora(model: nn.Module) -> None:
    """peft's initialisation (Kaiming A, zero B); needed after a whole-model init_weights, which
    also re-initialises the adapters' Linear layers."""
    for _, layer in lora_layers(model):
        layer.reset_lora_parameters(ADAPTER, init_lora_weights=True)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


@contextmanager
def plain_layer_names(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, each wrapped layer is replaced by its base layer, so state dicts use the
    plain names (`...q.weight`) and loaders for plain checkpoints fill the base weights in place
    (the base layer's parameters are the same objects, sharded or not)."""
    wrapped = list(lora_layers(model))
    for name, layer in wrapped:
        parent, child = _parent(model, name)
        parent._modules[child] = layer.get_base_layer()
    try:
        yield model
    finally:
        for name, layer in wrapped:
            parent, child = _parent(model, name)
            parent._modules[child] = layer


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """W <- W + (alpha / r) B A in every adapted layer, then drop the adapters (peft's
    merge_and_unload, done in place on a model that is not a PeftModel)."""
    for name, layer in list(lora_layers(model)):
        layer.merge(safe_merge=True)
        parent, child = _parent(model, name)
        setattr(parent, child, layer.get_base_layer())
    return model
