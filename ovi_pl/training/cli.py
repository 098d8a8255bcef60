"""`python -m ovi_pl fit|validate|test --config configs/<x>.yaml`: LightningCLI with MLflow tracking.

Without a logger in the config, runs are tracked in an embedded MLflow store, a SQLite file in
the run directory (`trainer.default_root_dir`). The fully resolved config is logged to the run
as `config.yaml`, and resuming with `--ckpt_path` continues the same MLflow run.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ovi_pl.models.ovi.config import get_model_config
from ovi_pl.training import modules  # noqa: F401  (registers the checkpoint metadata's dataclasses for torch.load)
from ovi_pl.training.lineage import DatasetLineageCallback
from ovi_pl.training.mlflow_logger import ResumableMLFlowLogger

# Our blocks add their sublayers' outputs out of place, so FSDP2's advice about in-place ops on
# returned views does not apply; it would otherwise print once per sharded module.
warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")


class LogConfigToMLflow(SaveConfigCallback):
    """Writes the resolved config to the MLflow run as config.yaml."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger) and trainer.is_global_zero:
            text = self.parser.dump(self.config, skip_none=False)
            # A resumed or re-evaluated run keeps each command's config next to the first one.
            command = TrainerFn(stage).value
            name = "config.yaml" if command == "fit" and not self.config.get("ckpt_path") else f"config-{command}.yaml"
            logger.experiment.log_text(logger.run_id, text, name)


class OviCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--experiment_name", default="ovi-pl", help="MLflow experiment for the embedded default logger"
        )
        parser.add_argument(
            "--run_name", default=None, help="MLflow run name for the embedded default logger (default: <command>-<time>)"
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        get_model_config(config["model"]["init_args"]["model_config"])  # an unknown model name fails here, before any work

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # Runs after the model, data and callbacks are built, so a bad value in any of them fails
        # before the MLflow store is created.
        config = self.config[self.subcommand]
        if config["trainer"].get("logger") in (None, True):
            kwargs["logger"] = _embedded_mlflow_logger(config, self.subcommand)
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(DatasetLineageCallback())  # every run names the curated data it read
        return trainer


def _embedded_mlflow_logger(config: Any, subcommand: str) -> ResumableMLFlowLogger:
    """MLflow in a SQLite file in the run directory (`trainer.default_root_dir`)."""
    root = Path(config["trainer"].get("default_root_dir") or "runs")
    root.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{root.resolve()}/mlflow.db"
    return ResumableMLFlowLogger(
        experiment_name=config["experiment_name"],
        # MLflow's generated names come from `random`, which seed_everything fixes: every run of a
        # config would get the same one.
        run_name=config.get("run_name") or f"{subcommand}-{time.strftime('%Y%m%d-%H%M%S')}",
        tracking_uri=tracking_uri,
        artifact_location=str((root / "mlflow-artifacts").resolve()),
        run_id=_resumable_run_id(config.get("ckpt_path"), tracking_uri),
    )


def _resumable_run_id(ckpt_path: str | None, tracking_uri: str) -> str | None:
    """The MLflow run a checkpoint was written by, if this store has it, so a resumed run logs into it."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    meta = path / "meta.pt" if path.is_dir() else path
    run_id = torch.load(meta, map_location="cpu", weights_only=True).get("mlflow_run_id")
    if run_id is None:
        return None
    try:
        MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except MlflowException:
        rank_zero_warn(f"MLflow run {run_id} of {ckpt_path} is not in {tracking_uri}; logging to a new run")
        return None
    return run_id


def run_training_cli(args: list[str]) -> None:
    OviCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LogConfigToMLflow,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        args=args,
        auto_configure_optimizers=False,
    )
