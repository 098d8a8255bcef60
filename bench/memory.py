"""Per-GPU training memory of every shipped training config x GPU count x memory option.

    python bench/memory.py                 # every config with a `trainer` section, 1 / 8 / 64 GPUs
    python bench/memory.py --gpus 8 --markdown

Weights, gradients, optimizer state and EMA are exact for the config's model, freezing preset and
LoRA (counted on the meta device, so no memory is used); the all-gathered units and activations
are estimates (ovi_pl/training/memory.py says how). Options, named by their config switches:
`fp32` (what the configs do), `frozen_dtype=bf16` (`model.parallel.frozen_dtype: bfloat16`),
`+adamw8bit` (`model.optimizer.name: adamw8bit`, torchao's 8-bit AdamW: 1 byte per moment) and
`+cpu_offload` (`model.parallel.cpu_offload: true`, FSDP2 keeps weights, gradients and optimizer
state in host memory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovi_pl.models.ovi import DiTTower, OviFusionModel, apply_freeze_preset, get_model_config  # noqa: E402
from ovi_pl.training.lora import LoraOptions, freeze_all_but_lora, inject_lora  # noqa: E402
from ovi_pl.training.memory import (  # noqa: E402
    GB,
    MemoryOptions,
    activation_bytes,
    count_parameters,
    per_gpu_bytes,
)

OPTIONS = {
    "fp32": MemoryOptions(),
    "frozen_dtype=bf16": MemoryOptions(frozen_bytes=2),
    "frozen_dtype=bf16+adamw8bit": MemoryOptions(frozen_bytes=2, optimizer_bytes=2),
    "frozen_dtype=bf16+cpu_offload": MemoryOptions(frozen_bytes=2, cpu_offload=True),
}
# Clip of the base ovi-11b configs (fusion.yaml): 121 frames at 704x1280 -> 31 x 22 x 40 tokens.
DEFAULT_VIDEO_TOKENS, DEFAULT_AUDIO_TOKENS = 31 * 22 * 40, 157
AUDIO_PRETRAIN_TOKENS = 375  # 12 s clips


def training_configs() -> list[Path]:
    found = sorted(ROOT.glob("configs/**/*.yaml"))
    return [p for p in found if "trainer" in (yaml.safe_load(p.read_text()) or {})]


def scenario(path: Path, lora_rank: int | None = None) -> dict:
    """Parameter counts, token counts and batch of one config (LoRA of the given rank if set)."""
    config = yaml.safe_load(path.read_text())
    args = config["model"]["init_args"]
    cfg = get_model_config(args["model_config"])
    audio_only = config["model"]["class_path"].endswith("AudioPretraining")
    lora = args.get("lora") or ({"rank": lora_rank, "alpha": float(lora_rank)} if lora_rank else None)
    with torch.device("meta"):
        model = DiTTower(cfg.audio) if audio_only else OviFusionModel(cfg)
        if lora:
            inject_lora(model, LoraOptions(**lora))
    if lora:
        freeze_all_but_lora(model)
    else:
        apply_freeze_preset(model, args.get("freeze_preset", "audio-pretrain" if audio_only else "fusion"))
    if audio_only:
        video_tokens, audio_tokens = 0, AUDIO_PRETRAIN_TOKENS
    elif cfg.clip is not None:
        side = int(cfg.clip.frame_area**0.5) // 32 * 32  # square frames, sides multiples of 32
        video_tokens, audio_tokens = cfg.clip.video_tokens(side, side, cfg.video.patch_size), cfg.clip.audio_latents
    else:
        video_tokens, audio_tokens = DEFAULT_VIDEO_TOKENS, DEFAULT_AUDIO_TOKENS
    return {
        "name": str(path.relative_to(ROOT / "configs")) + (f" LoRA r{lora_rank}" if lora_rank else ""),
        "cfg": cfg,
        "counts": count_parameters(model),
        "ema": args.get("ema_decay", 0.9999) is not None,
        "tokens": (video_tokens, audio_tokens),
        "batch": config["data"]["init_args"].get("batch_size", 1),
        "checkpointing": args.get("parallel", {}).get("activation_checkpointing", True),
    }


def rows(scenarios: list[dict], gpu_counts: list[int], context_sizes: list[int]) -> list[list[str]]:
    table = []
    for s in scenarios:
        for gpus in gpu_counts:
            for cp in (c for c in context_sizes if gpus % c == 0):
                acts = activation_bytes(s["cfg"], *s["tokens"], s["batch"], cp)
                for option, memory in OPTIONS.items():
                    b = per_gpu_bytes(s["counts"], memory, s["ema"], gpus, acts)
                    table.append([s["name"], f"{s['tokens'][0]}+{s['tokens'][1]}", str(s["batch"]), str(gpus), str(cp),
                                  option, *(f"{b[k] / GB:.1f}" for k in
                                            ("weights", "gradients", "optimizer", "ema", "gathered", "activations",
                                             "total"))])
    return table


HEADER = ["config", "tokens v+a", "batch", "GPUs", "CP", "option", "weights", "grads", "optim", "EMA", "gathered",
          "activations (est.)", "total GB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--context-parallel", type=int, nargs="+", default=[1], help="context-parallel sizes to show")
    parser.add_argument("--lora-rank", type=int, default=16, help="also show each fusion config as LoRA of this rank")
    parser.add_argument("--configs", nargs="*", help="config paths (default: every shipped training config)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    paths = [Path(p).resolve() for p in args.configs] if args.configs else training_configs()
    scenarios = [scenario(p) for p in paths]
    scenarios += [scenario(p, args.lora_rank) for p in paths
                  if args.lora_rank and "FusionTraining" in yaml.safe_load(p.read_text())["model"]["class_path"]]
    table = rows(scenarios, args.gpus, args.context_parallel)
    if args.markdown:
        print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
        print("\n".join("| " + " | ".join(r) + " |" for r in table))
        return
    widths = [max(len(x) for x in col) for col in zip(HEADER, *table)]
    for r in [HEADER, *table]:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
