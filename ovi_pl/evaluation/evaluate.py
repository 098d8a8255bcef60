"""Score a folder of generated clips and log the table to MLflow.

Clips and prompts come from the folder's `manifest.csv` (written by `python -m ovi_pl generate`:
file, text_prompt, ...), or from a prompt file in the same order as the sorted mp4 names.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ovi_pl.evaluation.sync import SyncScorer
from ovi_pl.evaluation.texts import audio_text, visual_text

MANIFEST = "manifest.csv"
# (mp4, text) items -> one score each
BatchScorer = Callable[[Sequence[tuple[Path, str]]], list[float]]


@dataclass(frozen=True)
class ClipRecord:
    path: Path
    prompt: str


def read_clip_folder(folder: str | os.PathLike[str], prompts: str | os.PathLike[str] | None = None) -> list[ClipRecord]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"clip folder {folder} does not exist")
    manifest = folder / MANIFEST
    if prompts is None and manifest.is_file():
        with manifest.open(newline="") as f:
            records = [ClipRecord(folder / row["file"], row["text_prompt"]) for row in csv.DictReader(f)]
    else:
        from ovi_pl.generation.prompts import read_prompts

        clips = sorted(folder.glob("*.mp4"))
        texts = [p.text for p in read_prompts(prompts)] if prompts is not None else []
        if len(texts) != len(clips):
            raise ValueError(f"{folder} has {len(clips)} mp4 files but {len(texts)} prompts; give a prompt file "
                             f"with one prompt per clip (sorted by file name) or a {MANIFEST}")
        records = [ClipRecord(c, t) for c, t in zip(clips, texts, strict=True)]
    missing = [str(r.path) for r in records if not r.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{MANIFEST} of {folder} lists clips that do not exist: {missing[:5]}")
    if not records:
        raise ValueError(f"{folder} holds no clips")
    return records


def evaluate_clips(
    records: Sequence[ClipRecord],
    sync: SyncScorer | None = None,
    clip: BatchScorer | None = None,
    clap: BatchScorer | None = None,
) -> list[dict[str, object]]:
    """One row per clip: file, prompt, and each available metric."""
    rows: list[dict[str, object]] = [{"file": r.path.name, "prompt": r.prompt} for r in records]
    if sync is not None:
        for row, record in zip(rows, records, strict=True):
            score = sync(record.path)
            row.update(sync_offset=score.offset, sync_c=score.confidence, sync_d=score.distance)
    if clip is not None:
        for row, value in zip(rows, clip([(r.path, visual_text(r.prompt)) for r in records]), strict=True):
            row["clip_score"] = value
    if clap is not None:
        for row, value in zip(rows, clap([(r.path, audio_text(r.prompt)) for r in records]), strict=True):
            row["clap_score"] = value
    return rows


def summarize(rows: Sequence[dict[str, object]]) -> dict[str, float]:
    """Mean of every numeric column over its finite values (sync offsets as the mean absolute offset, over
    the clips that got a Sync-C: a faceless clip's offset 0 is no measurement)."""
    summary: dict[str, float] = {}
    for key in rows[0]:
        values = [row[key] for row in rows if isinstance(row.get(key), (int, float))]
        if not values or key in ("file", "prompt"):
            continue
        if key == "sync_offset":
            offsets = [abs(row[key]) for row in rows if math.isfinite(row["sync_c"])]  # type: ignore[arg-type]
            summary["sync_abs_offset"] = sum(offsets) / len(offsets) if offsets else float("nan")
        else:
            finite = [float(v) for v in values if math.isfinite(v)]
            summary[key] = sum(finite) / len(finite) if finite else float("nan")
    return summary


def write_csv(rows: Sequence[dict[str, object]], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def log_to_mlflow(
    rows: Sequence[dict[str, object]],
    tracking_uri: str,
    experiment: str,
    run_name: str | None = None,
    run_id: str | None = None,
    params: dict[str, str] | None = None,
) -> str:
    """Log the table (`evaluation.json` via mlflow.log_table, and `evaluation.csv`) and the means
    (`eval/<metric>`) to a new run, or to `run_id` (e.g. the training run the clips came from)."""
    import tempfile

    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    if run_id is None:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=run_id, run_name=run_name) as run:
        mlflow.log_table(pd.DataFrame(rows), "evaluation.json")
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(write_csv(rows, Path(tmp) / "evaluation.csv")))
        mlflow.log_metrics({f"eval/{k}": v for k, v in summarize(rows).items()})
        if params:
            mlflow.log_params(params)
        return run.info.run_id
