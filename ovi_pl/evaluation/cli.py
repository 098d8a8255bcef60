"""`python -m ovi_pl evaluate --clips DIR [...]`: Sync-C/D, CLIP and CLAP scores of a clip folder,
logged to MLflow as a table (evaluation.json, evaluation.csv) and mean metrics (eval/*)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jsonargparse import ActionConfigFile, ArgumentParser

from ovi_pl.evaluation.evaluate import evaluate_clips, log_to_mlflow, read_clip_folder, summarize, write_csv


@dataclass(frozen=True)
class ClipOptions:
    """open-clip model name (or the name inside model_config_json) and its local weights file."""

    model: str
    weights: str
    model_config_json: str | None = None
    num_frames: int = 8
    python: str | None = None  # the models environment's interpreter; default .venv-models/bin/python


@dataclass(frozen=True)
class EvaluateConfig:
    """clips: a folder of mp4s with manifest.csv (from `generate`), or with `prompts` in file-name order.
    syncnet_weights: a local syncnet_v2.model; Sync-C/D with the project's SyncNet.
    face_detector: the faces SyncNet follows: haar (built in), yunet or s3fd with local face_detector_weights.
    sync_scorer: instead, `module:callable` mapping an mp4 path to a SyncScore (ovi_pl/evaluation/sync.py).
    clap_model: a local directory holding ClapModel + ClapProcessor (save_pretrained)."""

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
    if cfg.syncnet_weights:
        from ovi_pl.evaluation.sync import SyncNetScorer

        sync = SyncNetScorer(cfg.syncnet_weights, cfg.face_detector, cfg.face_detector_weights)
    elif cfg.sync_scorer:
        from ovi_pl.evaluation.sync import load_sync_scorer

        sync = load_sync_scorer(cfg.sync_scorer)
    if cfg.clip is not None:
        from ovi_pl.evaluation.clip_score import ClipScorer

        clip = ClipScorer(cfg.clip.model, cfg.clip.weights, cfg.clip.model_config_json, cfg.clip.num_frames,
                          cfg.clip.python)
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
