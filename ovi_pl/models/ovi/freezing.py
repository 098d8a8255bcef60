"""Which parameters train in each stage, by name.

`fusion` is Ovi's stage-2 mask: self-attention, all cross-attention (text and fusion) and the
text embeddings train; FFNs, modulation, norm3, time and patch embeddings and heads stay frozen
(5.7 B of 11.66 B at the released size). `fusion-fresh-video` is that mask on the audio tower
with the whole video tower trainable, for a video tower that starts from random weights (no
Wan2.2 DiT at the model's size, as in the tiny demo). `audio-pretrain` trains a whole audio tower
from scratch: applied to a fusion model it trains the audio tower without its fusion layers and
freezes the video tower.

A tower's init zeroes its output projection, so a tower not loaded from pretrained weights
learns nothing while its head is frozen: no gradient passes a zero head. `frozen_fresh_heads`
finds that case so training can refuse it before any work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from torch import nn

_FUSION_TRAINABLE = re.compile(r"(^|\.)(self_attn|cross_attn|text_embedding)\.")

# The projection `DiTTower.init_weights` zeroes, under the tower's name in a fusion model.
ZERO_INITIALISED_HEAD = "head.proj.weight"

FREEZE_PRESETS: dict[str, Callable[[str], bool]] = {
    "fusion": lambda name: bool(_FUSION_TRAINABLE.search(name)),
    "fusion-fresh-video": lambda name: name.startswith("video.") or bool(_FUSION_TRAINABLE.search(name)),
    "audio-pretrain": lambda name: not name.startswith("video.") and "_fusion" not in name,
    "full": lambda name: True,
}


def apply_freeze_preset(model: nn.Module, preset: str) -> tuple[int, int]:
    """Set requires_grad by preset; returns (trainable, total) parameter counts."""
    try:
        is_trainable = FREEZE_PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown freeze preset {preset!r}; choose one of {sorted(FREEZE_PRESETS)}") from None
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def frozen_fresh_heads(preset: str, fresh_towers: Iterable[str]) -> list[str]:
    """The towers among `fresh_towers` (prefixes `video`, `audio` of towers that keep their random
    init) whose zero-initialised head `preset` freezes: towers that could never learn."""
    is_trainable = FREEZE_PRESETS[preset]
    return [tower for tower in fresh_towers if not is_trainable(f"{tower}.{ZERO_INITIALISED_HEAD}")]
