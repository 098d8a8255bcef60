"""`python -m ovi_pl evaluate --clips DIR [...]`: Sync-C/D, CLIP and CLAP scores of a clip folder,
logged to MLflow as a table (evaluation.json, evaluation.csv) and mean metrics (eval/*)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser

from ovi_pl.envs import DEFAULT_ENVS
from ovi_pl.evaluation.evaluate import evaluate_clips, log_to_mlflow, read_clip_folder, summarize, write_csv


@dataclass(frozen=True)
class ClipOptions:
    """open-clip model name (or the name inside model_config_json) and its local weights file; environment:
    the name in `envs` that open-clip runs in."""

    model: str
    weights: str
    model_config_json: str | None = None
    num_frames: int = 8
    environment: str = "models"


@dataclass(frozen=True)
class EvaluateConfig:
    """clips: a folder of mp4s with manifest.csv (from `generate`), or with `prompts` in file-name order.
    syncnet_weights: a local syncnet_v2.model; Sync-C/D with the project's SyncNet.
    face_detector: the faces SyncNet follows: haar (built in), yunet or s3fd with local face_detector_weights.
    sync_scorer: instead, `module:callable` mapping an mp4 path to a SyncScore (ovi_pl/evaluation/sync.py).
    clap_model: a local directory holding ClapModel + ClapProcessor (save_pretrained).
    envs: named environments as in a curation config (README "Environments"): name -> exactly one of python,
    pip, uv, requirements, image_uri; relative paths are against the repository root."""

    clips: str
    prompts: str | None = None
    syncnet_weights: str | None = None
    face_detector: Literal["haar", "yunet", "s3fd"] = "haar"
    face_detector_weights: str | None = None
    sync_scorer: str | None = None
    clip: ClipOptions | None = None
    clap_model: str | None = None
    tracking_uri: str | None = None  # default: sqlite:///<clips>/mlflow.db
    experiment: str = "ovi-evaluation"
    run_name: str | None = None
    run_id: str | None = None  # log into an existing run instead, e.g. the training run
    envs: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_ENVS))


def parse_config(argv: Sequence[str]) -> EvaluateConfig:
    parser = ArgumentParser(prog="python -m ovi_pl evaluate", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(EvaluateConfig, as_group=False)
    namespace = parser.instantiate(parser.parse_args(list(argv)))
    return EvaluateConfig(**{f.name: namespace[f.name] for f in dataclasses.fields(EvaluateConfig)})


def run_evaluate(cfg: EvaluateConfig) -> tuple[str, list[dict[str, object]]]:
    if cfg.syncnet_weights and cfg.sync_scorer:
        raise ValueError("give --syncnet_weights or --sync_scorer, not both")
    if not (cfg.syncnet_weights or cfg.sync_scorer or cfg.clip or cfg.clap_model):
        raise ValueError("nothing to score: give --syncnet_weights (or --sync_scorer), --clip.model/--clip.weights "
                         "and/or --clap_model")
    sync = clip = clap = None
    if cfg.clip is not None:  # first: a missing or unlocked environment fails before other scorers load
        from ovi_pl.evaluation.clip_score import ClipScorer

        name = cfg.clip.environment
        if name not in cfg.envs:
            raise ValueError(f"clip.environment: {name!r} is not in envs (has {sorted(cfg.envs)}); add it there")
        clip = ClipScorer(cfg.clip.model, cfg.clip.weights, cfg.clip.model_config_json, cfg.clip.num_frames,
                          cfg.envs[name], f"envs.{name}")
    if cfg.syncnet_weights:
        from ovi_pl.evaluation.sync import SyncNetScorer

        sync = SyncNetScorer(cfg.syncnet_weights, cfg.face_detector, cfg.face_detector_weights)
    elif cfg.sync_scorer:
        from ovi_pl.evaluation.sync import load_sync_scorer

        sync = load_sync_scorer(cfg.sync_scorer)
    if cfg.clap_model:
        from ovi_pl.evaluation.clap_score import ClapScorer

        clap = ClapScorer(cfg.clap_model)
    rows = evaluate_clips(read_clip_folder(cfg.clips, cfg.prompts), sync=sync, clip=clip, clap=clap)
    folder = Path(cfg.clips)
    write_csv(rows, folder / "evaluation.csv")
    tracking_uri = cfg.tracking_uri or f"sqlite:///{folder.resolve() / 'mlflow.db'}"
    params = {"clips": str(folder.resolve()), "sync_scorer": cfg.sync_scorer or cfg.syncnet_weights or "",
              "clip_model": cfg.clip.model if cfg.clip else "", "clap_model": cfg.clap_model or ""}
    run_id = log_to_mlflow(rows, tracking_uri, cfg.experiment, cfg.run_name, cfg.run_id,
                           params=None if cfg.run_id else params)
    for key, value in summarize(rows).items():
        print(f"{key:>16}: {value:.4f}")
    print(f"logged to MLflow run {run_id} at {tracking_uri}")
    return run_id, rows


def main(argv: Sequence[str]) -> None:
    run_evaluate(parse_config(argv))
