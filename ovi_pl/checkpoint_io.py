"""safetensors state dicts on disk: single files, and sharded sets with a Hugging Face index json.

`load_safetensors` accepts a `.safetensors` file, a `*.safetensors.index.json` file, or a
directory holding one index json or one `.safetensors` file. `save_safetensors` writes a single
file, or shards plus `<stem>.safetensors.index.json` when `max_shard_bytes` is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.tensor import DTensor

StateDict = dict[str, Tensor]


def resolve_safetensors_path(path: str | os.PathLike[str]) -> Path:
    """The file to open for `path`: itself, or the single index json / safetensors inside a directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give a .safetensors file, an index json or a directory")
    if path.is_file():
        return path
    for pattern in ("*.safetensors.index.json", "*.safetensors"):
        found = sorted(path.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{path} holds several {pattern} files ({[f.name for f in found]}); pass the one to load")
    raise FileNotFoundError(f"{path} holds no .safetensors file or *.safetensors.index.json")


def load_safetensors(path: str | os.PathLike[str], device: str = "cpu") -> StateDict:
    """Read a whole state dict, merging the shards listed by an index json."""
    path = resolve_safetensors_path(path)
    if path.suffix != ".json":
        return load_file(path, device=device)
    weight_map: dict[str, str] = json.loads(path.read_text())["weight_map"]
    state: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{path.name} lists shard {shard}, which is missing from {path.parent}")
        state.update(load_file(shard_path, device=device))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise ValueError(f"{path} maps {len(missing)} tensors that its shards lack, e.g. {missing[:5]}")
    return state


def save_safetensors(
    state: StateDict,
    path: str | os.PathLike[str],
    max_shard_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `state` to `path` (a `.safetensors` file name); returns the file a loader should open."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the file name must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors that share storage or are views; write plain copies.
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    shards = _split_into_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], path, metadata=metadata)
        return path
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, start=1):
        name = f"{path.stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, path.parent / name, metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    index = path.parent / f"{path.name}.index.json"
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return index


def _split_into_shards(tensors: StateDict, max_shard_bytes: int | None) -> list[StateDict]:
    if max_shard_bytes is None:
        return [tensors]
    shards: list[StateDict] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    return shards


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit a model; the message lists every differing key."""


def load_into_module(
    module: nn.Module,
    state: StateDict,
    source: str,
    may_be_missing: Callable[[str], bool] = lambda name: False,
) -> list[str]:
    """Load `state` into `module`, failing with every missing, unexpected or misshapen key.

    Keys for which `may_be_missing` is true may be absent (e.g. fusion layers when loading a
    single-modality checkpoint); they keep their current values. Returns those absent keys.
    Parameters on the meta device are replaced by the loaded tensors (cast to the parameter dtype);
    FSDP2-sharded parameters receive their shard.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    misshapen = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    not_allowed = [k for k in missing if not may_be_missing(k)]
    if not_allowed or unexpected or misshapen:
        raise CheckpointMismatchError(
            f"{source} does not fit {type(module).__name__}:\n"
            + _listing("missing from the checkpoint", not_allowed)
            + _listing("unexpected in the checkpoint", unexpected)
            + _listing("shape mismatches", misshapen)
            + "Check that the model config matches the checkpoint's geometry and that the right loader is used "
            "(Ovi fusion checkpoint, Wan2.2 DiT, or an ovi-pl audio tower)."
        )
    cast = {k: v.to(expected[k].dtype) for k, v in state.items()}
    if any(isinstance(t, DTensor) for t in expected.values()):
        # Sharded (FSDP2) module: every rank passes the full tensors and keeps its own shard.
        set_model_state_dict(module, cast, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        module.load_state_dict(cast, strict=False, assign=any(t.is_meta for t in expected.values()))
    return missing


def _listing(title: str, keys: list[str], limit: int = 20) -> str:
    if not keys:
        return ""
    shown = "\n".join(f"    {k}" for k in keys[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"  {len(keys)} {title}:\n{shown}{more}\n"
