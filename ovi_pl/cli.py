"""`python -m ovi_pl <command>`: the project's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import torch


def list_models(argv: list[str]) -> None:
    """Print every named model config with its size, built on the meta device."""
    from ovi_pl.models.ovi import MODEL_CONFIGS, OviFusionModel, apply_freeze_preset

    print(f"{'name':<12} {'layers':>6} {'dim':>6} {'params':>10} {'fusion-trainable':>17}  description")
    for name, cfg in MODEL_CONFIGS.items():
        with torch.device("meta"):
            model = OviFusionModel(cfg)
        trainable, total = apply_freeze_preset(model, "fusion")
        print(
            f"{name:<12} {cfg.video.num_layers:>6} {cfg.video.dim:>6} {_billions(total):>10} "
            f"{_billions(trainable):>17}  {cfg.description}"
        )


def _billions(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def demo(argv: list[str]) -> None:
    from ovi_pl.demo import run_demo

    run_demo()


def training(argv: list[str]) -> None:
    from ovi_pl.training.cli import run_training_cli

    run_training_cli(argv)


def export(argv: list[str]) -> None:
    from ovi_pl.training.export import main as export_main

    export_main(argv[1:])


def generate(argv: list[str]) -> None:
    from ovi_pl.generation.cli import main as generate_main

    generate_main(argv[1:])


def evaluate(argv: list[str]) -> None:
    from ovi_pl.evaluation.cli import main as evaluate_main

    evaluate_main(argv[1:])


def lineage(argv: list[str]) -> None:
    from ovi_pl.lineage_cli import main as lineage_main

    lineage_main(argv[1:])


# name -> (handler taking the full argv, help). Handlers parse their own options.
COMMANDS: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "fit": (training, "train: python -m ovi_pl fit --config configs/fusion.yaml (LightningCLI)"),
    "validate": (training, "validation loss of a checkpoint at fixed noise levels (LightningCLI)"),
    "test": (training, "test loop of a checkpoint (LightningCLI)"),
    "export": (export, "write a training checkpoint as one safetensors file (Ovi's key format for fusion runs)"),
    "generate": (generate, "sample mp4 clips with sound from a checkpoint: python -m ovi_pl generate --config configs/generate.yaml"),
    "evaluate": (evaluate, "score a folder of clips (Sync-C/D, CLIP, CLAP) and log a table to MLflow"),
    "lineage": (lineage, "trace exported weights back to their MLflow run and curated datasets"),
    "models": (list_models, "list the named model configs and their parameter counts"),
    "demo": (demo, "run the end-to-end CPU demo at the ovi-tiny size"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ovi_pl", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        build_parser().parse_args(args)  # prints help or a usage error naming the choices
        build_parser().print_help()
        return 0
    COMMANDS[args[0]][0](args)
    return 0
