"""Lineage from pixels to weights: curation's dataset id, the MLflow run that trained on it, the exported
file that names both, and `python -m ovi_pl lineage` walking the chain back."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient
from safetensors import safe_open

from curation.collector import RunPaths
from curation.config import CurationConfig
from curation.pipeline import write_lineage
from data_specs.lineage import DATASET_FILE, read_dataset_file
from ovi_pl.lineage_cli import describe_lineage
from ovi_pl.training.cli import run_training_cli
from ovi_pl.training.export import export_checkpoint

from conftest import run_ovi_pl
from test_datamodule import TEXT_LEN, latent_sample, make_clip, write_shard

TEXT_MEMBER = "text_d32.npy"


def curation_run(root: Path, keys: list[str], min_motion: float = 0.02, mp4: bytes = b"") -> str:
    """A curation output dir as `curation.pipeline.run` leaves it (shards/, manifest.parquet,
    report/summary.json), its dataset.json written by the pipeline's own `write_lineage`."""
    paths = RunPaths(root)
    paths.shards.mkdir(parents=True, exist_ok=True)
    if mp4:
        write_shard(paths.shards / "shard-000000.tar",
                    [latent_sample(k, mp4, 128, 64, seed=i, text_tokens=4) for i, k in enumerate(keys)])
    pq.write_table(pa.table({"key": keys, "status": ["kept"] * len(keys)}), paths.manifest)
    summary = {"inputs": len(keys), "clips": len(keys), "kept": len(keys), "rejected": 0, "shards": 1}
    paths.report.mkdir(exist_ok=True)
    (paths.report / "summary.json").write_text(json.dumps(summary))
    config = CurationConfig(inputs={"paths": ["media/"]}, output={"dir": str(root)},
                            filters={"motion": {"min_motion": min_motion}})
    return write_lineage(config, paths, summary)


def test_dataset_id_follows_the_manifest_and_config_not_the_rerun(tmp_path: Path) -> None:
    first = curation_run(tmp_path / "a", ["k0", "k1"])
    assert read_dataset_file(tmp_path / "a/shards" / DATASET_FILE).dataset_id == first
    assert curation_run(tmp_path / "a", ["k0", "k1"]) == first  # a resume that writes the same data
    assert curation_run(tmp_path / "moved", ["k0", "k1"]) == first  # output.dir is where, not what
    assert curation_run(tmp_path / "b", ["k0", "k2"]) != first  # another manifest
    assert curation_run(tmp_path / "c", ["k0", "k1"], min_motion=0.05) != first  # another setting


def test_bad_dataset_file_names_itself(tmp_path: Path) -> None:
    from data_specs.lineage import DatasetRecordError

    (tmp_path / DATASET_FILE).write_text(json.dumps({"format": 1, "dataset_id": "ds-x"}))
    with pytest.raises(DatasetRecordError, match=rf"{DATASET_FILE} lacks \['shards_dir'"):
        read_dataset_file(tmp_path / DATASET_FILE)


def fit_config(tmp_path: Path, train: Path, val: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1,
                    "strategy": {"class_path": "ovi_pl.training.strategy.FSDP2Strategy"}, "precision": "32-true",
                    "max_steps": 2, "num_sanity_val_steps": 0, "limit_val_batches": 0,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "runs"),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"every_n_train_steps": 2}}]},
        "model": {"class_path": "ovi_pl.training.modules.FusionTraining",
                  "init_args": {"model_config": "ovi-tiny", "freeze_preset": "full", "ema_decay": None,
                                "optimizer": {"lr": 1e-3, "warmup_steps": 1},
                                "parallel": {"compute_dtype": "float32", "activation_checkpointing": False}}},
        "data": {"class_path": "ovi_pl.data.ShardDataModule",
                 "init_args": {"train_urls": str(train), "val_urls": str(val), "mode": "latent", "batch_size": 2,
                               "num_workers": 0, "text_member": TEXT_MEMBER, "text_len": TEXT_LEN}},
    }
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_exported_weights_lead_back_to_the_run_and_the_curation(tmp_path: Path) -> None:
    mp4 = make_clip(tmp_path / "wide.mp4", 128, 64)
    train_id = curation_run(tmp_path / "cur_train", [f"t{i}" for i in range(4)], mp4=mp4)
    val_id = curation_run(tmp_path / "cur_val", ["v0", "v1"], mp4=mp4)
    # In process (what `python -m ovi_pl fit` runs), saving a second interpreter's imports.
    run_training_cli(["fit", "--config", str(fit_config(tmp_path, tmp_path / "cur_train/shards",
                                                         tmp_path / "cur_val/shards"))])

    (ckpt,) = tmp_path.glob("runs/*/*/checkpoints/*step=2.ckpt")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-pl").experiment_id])
    assert run.data.tags["dataset.train"] == train_id and run.data.tags["dataset.val"] == val_id
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, f"datasets/{train_id}")}
    assert artifacts == {f"datasets/{train_id}/{n}" for n in ("dataset.json", "curation_config.json", "summary.json")}
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, f"datasets/{train_id}/curation_config.json",
                                                       str(tmp_path))).read_text())
    assert logged["filters"]["motion"]["min_motion"] == 0.02

    weights = export_checkpoint(ckpt, tmp_path / "tiny.safetensors")
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    assert meta["mlflow_run_id"] == run.info.run_id
    assert [d["dataset_id"] for d in json.loads(meta["datasets"])] == [train_id, val_id]

    shown = run_ovi_pl(tmp_path, "lineage", str(weights))
    assert shown.returncode == 0, shown.stderr[-3000:]
    out = shown.stdout
    for expected in (f"MLflow run: {run.info.run_id}", "experiment: ovi-pl", f"train dataset: {train_id}",
                     f"val dataset: {val_id}", f"curation run: {tmp_path / 'cur_train'}",
                     "counts: inputs 4, clips 4, kept 4, rejected 0, shards 1"):
        assert expected in out, (expected, out)

    # The chain breaks visibly where a link is gone: shards moved away from their dataset.json.
    (tmp_path / "cur_val/shards" / DATASET_FILE).unlink()
    out = "\n".join(describe_lineage(weights))
    assert f"{tmp_path / 'cur_val/shards' / DATASET_FILE} is not reachable from here" in out, out
    store = tmp_path / "runs/mlflow.db"
    store.rename(tmp_path / "elsewhere.db")
    out = "\n".join(describe_lineage(weights))
    assert f"run not readable here: {store} is missing" in out and not store.exists(), out
