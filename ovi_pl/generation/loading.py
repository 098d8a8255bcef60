"""The fusion model for inference from an Ovi-format safetensors file or a training checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ovi_pl.models.ovi import OviFusionModel, get_model_config, load_ovi_checkpoint


def is_training_checkpoint(checkpoint: str | os.PathLike[str]) -> bool:
    """A distributed training checkpoint directory, which carries its own model config."""
    return (Path(checkpoint) / "meta.pt").is_file()


def load_fusion_model(
    checkpoint: str | os.PathLike[str],
    model_config: str = "ovi-11b",
    ema: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> OviFusionModel:
    """A distributed training checkpoint directory (…/checkpoints/*.ckpt, its config read from
    the checkpoint; LoRA adapters merged) or Ovi's safetensors (file, index json or directory,
    geometry from `model_config`)."""
    path = Path(checkpoint)
    if is_training_checkpoint(path):
        from ovi_pl.training.export import load_training_checkpoint

        model = load_training_checkpoint(path, ema=ema)
        if not isinstance(model, OviFusionModel):
            raise ValueError(f"{path} is an audio-pretraining checkpoint; generation needs a fusion run's checkpoint")
    else:
        if ema:
            raise ValueError(f"ema=True applies to training checkpoints; {path} is a safetensors export")
        with torch.device("meta"):
            model = OviFusionModel(get_model_config(model_config))
        load_ovi_checkpoint(model, path)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
