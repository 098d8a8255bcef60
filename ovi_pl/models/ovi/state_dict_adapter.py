"""Key names of foreign checkpoints <-> ours, and the loaders and savers built on them.

Ovi's released fusion checkpoint names its towers `video_model.` / `audio_model.` and keeps Wan's
module layout; Wan2.2-TI2V-5B's DiT is the video tower alone, with each block's adaLN offset as a
bare `blocks.N.modulation` parameter. Our names differ only where a module is named for what it
is (`modulation.offset`, `head.proj`, `patch_embedding.conv/mlp/proj`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from ovi_pl.checkpoint_io import StateDict, load_into_module, load_safetensors, save_safetensors
from ovi_pl.models.ovi.fusion import OviFusionModel
from ovi_pl.models.ovi.tower import DiTTower

# Patterns see the key with a leading "." so that every module name starts with one.
_OVI_TO_OURS = [
    (r"^\.video_model\.", ".video."),
    (r"^\.audio_model\.", ".audio."),
    (r"\.blocks\.(\d+)\.modulation\.modulation$", r".blocks.\1.modulation.offset"),
    (r"\.head\.modulation$", ".head.modulation.offset"),
    (r"\.head\.head\.", ".head.proj."),
    (r"\.patch_embedding\.(weight|bias)$", r".patch_embedding.proj.\1"),
    (r"\.patch_embedding\.0\.", ".patch_embedding.conv."),
    (r"\.patch_embedding\.2\.", ".patch_embedding.mlp."),
]
_OURS_TO_OVI = [
    (r"^\.video\.", ".video_model."),
    (r"^\.audio\.", ".audio_model."),
    (r"\.blocks\.(\d+)\.modulation\.offset$", r".blocks.\1.modulation.modulation"),
    (r"\.head\.modulation\.offset$", ".head.modulation"),
    (r"\.head\.proj\.", ".head.head."),
    (r"\.patch_embedding\.proj\.", ".patch_embedding."),
    (r"\.patch_embedding\.conv\.", ".patch_embedding.0."),
    (r"\.patch_embedding\.mlp\.", ".patch_embedding.2."),
]
# Wan2.2 keys become Ovi video-tower keys with these, then ours with _OVI_TO_OURS.
_WAN_TO_OVI = [
    (r"^\.", ".video_model."),
    (r"\.blocks\.(\d+)\.modulation$", r".blocks.\1.modulation.modulation"),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    key = "." + key
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key[1:]


def _rename_all(state: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    return {_rename(k, rules): v for k, v in state.items()}


def ovi_to_ours(state: StateDict) -> StateDict:
    return _rename_all(state, _OVI_TO_OURS)


def ours_to_ovi(state: StateDict) -> StateDict:
    return _rename_all(state, _OURS_TO_OVI)


def wan22_to_ours(state: StateDict) -> StateDict:
    """Wan2.2 DiT keys -> our fusion-model keys under `video.`."""
    return ovi_to_ours(_rename_all(state, _WAN_TO_OVI))


def _is_fusion_layer(key: str) -> bool:
    return "_fusion." in key


def load_ovi_checkpoint(model: OviFusionModel, path: str | os.PathLike[str]) -> None:
    """Load Ovi's fusion checkpoint (file, index json, or directory) into `model`, strictly."""
    load_into_module(model, ovi_to_ours(load_safetensors(path)), source=f"Ovi checkpoint {path}")


def save_ovi_checkpoint(
    model: OviFusionModel, path: str | os.PathLike[str], max_shard_bytes: int | None = None
) -> Path:
    """Write `model` with Ovi's key names, loadable by the reference inference code."""
    return save_safetensors(ours_to_ovi(model.state_dict()), path, max_shard_bytes)


def load_wan22_video_tower(model: OviFusionModel | DiTTower, path: str | os.PathLike[str]) -> list[str]:
    """Load Wan2.2-TI2V-5B DiT weights into the video tower; fusion layers keep their init.

    Returns the keys left at their initial values (the fusion layers, when loading into a fusion model).
    """
    tower = model.video if isinstance(model, OviFusionModel) else model
    if tower.cfg.modality != "video":
        raise ValueError("Wan2.2 DiT weights go into a video tower; this is an audio tower")
    state = {k.removeprefix("video."): v for k, v in wan22_to_ours(load_safetensors(path)).items()}
    return load_into_module(tower, state, source=f"Wan2.2 DiT checkpoint {path}", may_be_missing=_is_fusion_layer)


def load_audio_tower(model: OviFusionModel | DiTTower, path: str | os.PathLike[str]) -> list[str]:
    """Load an audio tower trained by ovi-pl (a `DiTTower` state dict) into a fusion model or tower.

    Fusion layers absent from the pretrained tower keep their init; returns those keys.
    """
    tower: nn.Module = model.audio if isinstance(model, OviFusionModel) else model
    return load_into_module(
        tower, load_safetensors(path), source=f"audio tower checkpoint {path}", may_be_missing=_is_fusion_layer
    )


def save_tower(tower: DiTTower, path: str | os.PathLike[str]) -> Path:
    """Write a single tower with our key names (what `load_audio_tower` reads)."""
    return save_safetensors(tower.state_dict(), path)
