"""Strict state-dict loading with errors that say which file and which keys are wrong."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the module it was loaded into."""


def read_torch_checkpoint(path: str | os.PathLike[str], key: str | None = None) -> dict[str, Tensor]:
    """A state dict from a `torch.save` file, optionally nested under `key` (BigVGAN's 'generator').

    weights_only=True: the released files hold plain tensors, and nothing else should be unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointMismatchError(f"{path}: expected the state dict under key {key!r}, found {found}")
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{path}: expected a dict of tensors")
    return dict(obj)


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, Tensor], source: str | os.PathLike[str], assign: bool = False
) -> None:
    """`module.load_state_dict(state)` that names `source` and lists every missing, unexpected and
    misshapen key, instead of torch's first-error message. assign=True for modules built on meta."""
    # Module load-state-dict pre-hooks (weight_norm's weight_g/weight_v compatibility) rename keys
    # before matching, so shapes are checked by torch and key sets are taken from its report.
    expected = module.state_dict()
    misshapen = [
        f"{k}: file {tuple(v.shape)} vs module {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if misshapen:
        raise CheckpointMismatchError(_describe(source, [], [], misshapen))
    result = module.load_state_dict(dict(state), strict=False, assign=assign)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointMismatchError(_describe(source, result.missing_keys, result.unexpected_keys, []))


def _describe(source: str | os.PathLike[str], missing: list[str], unexpected: list[str], misshapen: list[str]) -> str:
    lines = [f"checkpoint {source} does not match the module:"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
        if items:
            shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
            lines.append(f"  {len(items)} {title} keys: {shown}")
    return "\n".join(lines)
