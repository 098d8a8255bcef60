"""Turn a sharded (distributed) training checkpoint into one safetensors file.

A fusion run exports in Ovi's key format (loadable by the reference inference code and by
`load_ovi_checkpoint`); an audio-pretraining run exports the audio tower in ours (what
`FusionTraining(audio_init=...)` reads). `ema=True` writes the averaged weights instead of the
raw ones for every trainable parameter.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from ovi_pl.checkpoint_io import save_safetensors
from ovi_pl.lineage_cli import lineage_metadata
from ovi_pl.models.ovi import DiTTower, OviFusionModel, get_model_config
from ovi_pl.models.ovi.state_dict_adapter import ours_to_ovi
from ovi_pl.training.ema import ema_key
from ovi_pl.training.lora import inject_lora, merge_lora

_MODEL = "model."
_EMA = "ema.shadow."


def load_training_checkpoint(checkpoint: str | Path, ema: bool = False) -> nn.Module:
    """The model of a distributed Lightning checkpoint directory, as one CPU module (a LoRA run's
    adapters merged into the base weights)."""
    path = Path(checkpoint)
    if not (path / "meta.pt").is_file():
        raise FileNotFoundError(f"{path} is not a distributed training checkpoint (no meta.pt inside)")
    hparams = torch.load(path / "meta.pt", map_location="cpu", weights_only=True)["hyper_parameters"]
    cfg = get_model_config(hparams["model_config"])
    keys = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    is_fusion = any(k.startswith(f"state_dict.{_MODEL}video.") for k in keys)
    model: nn.Module = OviFusionModel(cfg) if is_fusion else DiTTower(cfg.audio)
    lora = hparams.get("lora")
    if lora is not None:
        inject_lora(model, lora)  # the checkpoint holds adapter and base weights under peft's names

    wanted = {f"{_MODEL}{k}": v for k, v in model.state_dict().items()}
    if ema:
        trainable = [k for k in wanted if f"state_dict.{_EMA}{ema_key(k.removeprefix(_MODEL))}" in keys]
        if not trainable:
            raise ValueError(f"{path} holds no EMA weights; train with ema_decay set, or export without --ema")
        for k in trainable:
            wanted[f"{_EMA}{ema_key(k.removeprefix(_MODEL))}"] = wanted.pop(k)
    state = {"state_dict": wanted}
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    loaded = {_unprefix(k): v for k, v in state["state_dict"].items()}
    model.load_state_dict(loaded, strict=True)
    return model if lora is None else merge_lora(model)


def _unprefix(key: str) -> str:
    if key.startswith(_EMA):
        return key.removeprefix(_EMA).replace("__", ".")
    return key.removeprefix(_MODEL)


def export_checkpoint(checkpoint: str | Path, output: str | Path, ema: bool = False) -> Path:
    """Write the checkpoint's model to `output`; its metadata names the MLflow run and the datasets
    it was trained on (`ovi_pl/lineage_cli.py`)."""
    model = load_training_checkpoint(checkpoint, ema=ema)
    meta = torch.load(Path(checkpoint) / "meta.pt", map_location="cpu", weights_only=True)
    metadata = lineage_metadata(meta)
    # Ovi's key format for a fusion model (what save_ovi_checkpoint writes); a tower keeps ours.
    state = ours_to_ovi(model.state_dict()) if isinstance(model, OviFusionModel) else model.state_dict()
    return save_safetensors(state, output, metadata=metadata)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ovi_pl export", description=__doc__)
    parser.add_argument("checkpoint", help="a checkpoint directory written during training (…/checkpoints/*.ckpt)")
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights of the trainable parameters")
    args = parser.parse_args(argv)
    print(f"wrote {export_checkpoint(args.checkpoint, args.output, ema=args.ema)}")
