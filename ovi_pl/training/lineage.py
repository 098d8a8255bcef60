"""Lineage of a training run: which curated datasets it read, logged to MLflow and kept in checkpoints.

`DatasetLineageCallback` finds the `dataset.json` of the train and val shard sets (data_specs.lineage),
tags the MLflow run with their ids (`dataset.train`, `dataset.val`), logs each dataset's record,
curation config and summary as artifacts under `datasets/<id>/`, and writes the run id, tracking URI
and dataset ids into every checkpoint (`checkpoint["lineage"]`), from where `export` copies them
into the safetensors metadata (`ovi_pl.lineage_cli.lineage_metadata`).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ovi_pl.data.lineage import DatasetLineage, find_dataset_records
from ovi_pl.lineage_cli import DATASETS, EXPERIMENT_ID, RUN_ID, TRACKING_URI

SPLITS = ("train", "val")


class DatasetLineageCallback(Callback):
    """Logs the datasets a run reads to MLflow and stamps them into its checkpoints (module docstring)."""

    def __init__(self) -> None:
        self.lineage: dict[str, DatasetLineage] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        self.lineage = {}
        for split in SPLITS:
            urls = getattr(datamodule, f"{split}_urls", None)
            if not urls:  # synthetic data, or no validation shards
                continue
            found = find_dataset_records(list(urls))
            if found.missing:
                rank_zero_warn(f"{split} shards in {found.missing} have no dataset.json: the run cannot name the "
                               "curated dataset they came from (curate them with `python -m curation`)")
            self.lineage[split] = found
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger) and trainer.is_global_zero:
            self._log_to_mlflow(logger)

    def _log_to_mlflow(self, logger: MLFlowLogger) -> None:
        client, run_id = logger.experiment, logger.run_id
        for split, found in self.lineage.items():
            client.set_tag(run_id, f"dataset.{split}", ",".join(found.ids) or "unknown")
            for record in found.records:
                where = f"datasets/{record.dataset_id}"
                client.log_dict(run_id, asdict(record), f"{where}/dataset.json")
                client.log_dict(run_id, record.config, f"{where}/curation_config.json")
                client.log_dict(run_id, record.summary, f"{where}/summary.json")

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        logger = trainer.logger
        mlflow = isinstance(logger, MLFlowLogger)
        checkpoint["lineage"] = {
            RUN_ID: logger.run_id if mlflow else None,
            TRACKING_URI: logger._tracking_uri if mlflow else None,  # the logger keeps no public accessor
            EXPERIMENT_ID: logger.experiment_id if mlflow else None,
            DATASETS: [{"split": split, "dataset_id": r.dataset_id, "shards_dir": r.shards_dir,
                        "curation_dir": r.curation_dir}
                       for split, found in self.lineage.items() for r in found.records],
        }
