"""Exponential moving average of the trainable weights, sharded like the weights themselves.

The shadow copies are created after FSDP2 has sharded the model, so each is a DTensor with its
parameter's placement: every rank averages only its own shard, and distributed checkpoints save
and reshard them like any other parameter.
"""

from __future__ import annotations

import torch
from torch import nn


class ExponentialMovingAverage(nn.Module):
    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.shadow = nn.ParameterDict(
            {
                ema_key(name): nn.Parameter(p.detach().clone(), requires_grad=False)
                for name, p in model.named_parameters()
                if p.requires_grad
            }
        )

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name in self._names:
            self.shadow[ema_key(name)].lerp_(params[name].detach(), 1.0 - self.decay)

    def averaged(self) -> dict[str, torch.Tensor]:
        """The averaged weights under the model's parameter names."""
        return {name: self.shadow[ema_key(name)] for name in self._names}


def ema_key(name: str) -> str:
    """The shadow's key for a parameter name (nn.ParameterDict keys may not contain dots)."""
    return name.replace(".", "__")
