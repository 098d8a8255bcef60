"""The lineage metadata of exported weights, and `python -m ovi_pl lineage <file.safetensors>`, which
follows it from the weights back to the curation run.

Prints the chain exported file -> MLflow run (tracking URI, experiment) -> dataset ids -> each curated
shard set (its dir, the curation output dir, config and summary counts), reading what is reachable from
this machine and naming what is not.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import safe_open

from data_specs.lineage import DATASET_FILE, DatasetRecord, DatasetRecordError, read_dataset_file
from ovi_pl.checkpoint_io import resolve_safetensors_path

# safetensors metadata keys (str -> str) that `export` writes (from a checkpoint's "lineage", which
# training.lineage.DatasetLineageCallback puts there) and `describe_lineage` reads.
RUN_ID, TRACKING_URI, EXPERIMENT_ID, DATASETS = "mlflow_run_id", "mlflow_tracking_uri", "mlflow_experiment_id", \
    "datasets"
_COUNTS = ("inputs", "clips", "kept", "rejected", "quarantined", "audio_segments", "shards")


def lineage_metadata(checkpoint_meta: dict[str, Any]) -> dict[str, str]:
    """The safetensors metadata (str -> str) for a checkpoint's `meta.pt`: run id, tracking URI,
    experiment id and the datasets (a JSON list), each only where the checkpoint knows it."""
    lineage = checkpoint_meta.get("lineage") or {RUN_ID: checkpoint_meta.get("mlflow_run_id")}
    metadata = {k: str(lineage[k]) for k in (RUN_ID, TRACKING_URI, EXPERIMENT_ID) if lineage.get(k)}
    if lineage.get(DATASETS):
        metadata[DATASETS] = json.dumps(lineage[DATASETS])
    return metadata


def describe_lineage(file: str | Path) -> list[str]:
    """The lines `python -m ovi_pl lineage` prints for `file`."""
    path = resolve_safetensors_path(file)
    if path.suffix == ".json":  # a sharded export: every shard carries the same metadata
        path = path.parent / sorted(set(json.loads(path.read_text())["weight_map"].values()))[0]
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    lines = [f"weights: {path}"]
    run_id = meta.get(RUN_ID)
    if run_id is None:
        lines.append("  MLflow run: not recorded (exported from a checkpoint of a run without an MLflow logger, "
                     "or by an ovi-pl before lineage)")
    else:
        lines += ["  MLflow run: " + run_id, *_describe_run(run_id, meta.get(TRACKING_URI), meta.get(EXPERIMENT_ID))]
    datasets = json.loads(meta.get(DATASETS, "[]"))
    if not datasets:
        lines.append("  datasets: none recorded (synthetic data, or shards without dataset.json)")
    for entry in datasets:
        lines.append(f"  {entry['split']} dataset: {entry['dataset_id']}")
        lines += ["    " + line for line in _describe_dataset(entry)]
    return lines


def _describe_run(run_id: str, tracking_uri: str | None, experiment_id: str | None) -> list[str]:
    if tracking_uri is None:
        return ["    tracking URI: not recorded"]
    lines = [f"    tracking URI: {tracking_uri}"]
    store = tracking_uri.removeprefix("sqlite:///")
    if store != tracking_uri and not Path(store).is_file():  # MlflowClient would create an empty store there
        return lines + [f"    experiment: {experiment_id or 'unknown'} (run not readable here: {store} is missing)"]
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        run = client.get_run(run_id)
        experiment = client.get_experiment(run.info.experiment_id).name
    except MlflowException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return lines + [f"    experiment: {experiment_id or 'unknown'} (run not readable here: {first})"]
    return lines + [f"    experiment: {experiment} ({run.info.experiment_id}), run name {run.info.run_name}, "
                    f"status {run.info.status}"]


def _describe_dataset(entry: dict[str, Any]) -> list[str]:
    shards_dir = Path(entry["shards_dir"])
    dataset_file = shards_dir / DATASET_FILE
    lines = [f"shards: {shards_dir}"]
    if not dataset_file.is_file():
        return lines + [f"{dataset_file} is not reachable from here: curation details unknown "
                        f"(the MLflow run's artifacts datasets/{entry['dataset_id']}/ hold a copy)"]
    try:
        record: DatasetRecord = read_dataset_file(dataset_file)
    except DatasetRecordError as exc:
        return lines + [str(exc)]
    if record.dataset_id != entry["dataset_id"]:
        return lines + [f"{dataset_file} now names dataset {record.dataset_id}: the shards were re-curated "
                        "since this training run; its config and counts are not the ones trained on"]
    if record.derived_from:  # e.g. latent shards: say what made them, then follow their source to curation
        source = record.derived_from
        made = ", ".join(f"{k} {v}" for k, v in record.summary.items())
        lines.append(f"made by the {record.config.get('stage', 'unknown')} stage ({made}) from dataset "
                     f"{source['dataset_id']}:")
        return lines + ["  " + line for line in _describe_dataset(source)]
    counts = ", ".join(f"{k} {record.summary[k]}" for k in _COUNTS if record.summary.get(k) is not None)
    code = record.code_version
    dirty = " (uncommitted changes)" if code.get("git_dirty") else ""
    lines += [f"curation run: {record.curation_dir or 'not recorded'}",
              f"code: git {code.get('git_commit') or 'unknown'}{dirty}, shard schema {code.get('schema_version')}",
              f"counts: {counts or 'none recorded'}"]
    state_config = Path(record.curation_dir) / "_state" / "config.json" if record.curation_dir else None
    if state_config is not None and state_config.is_file():
        lines.append(f"curation config: {state_config}")
    else:
        lines.append(f"curation config: in {dataset_file} (the curation dir's _state/config.json is not reachable)")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ovi_pl lineage", description=__doc__)
    parser.add_argument("file", help="an exported .safetensors file (or its index json / directory)")
    args = parser.parse_args(argv)
    print("\n".join(describe_lineage(args.file)))
