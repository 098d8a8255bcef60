"""Checkpoints at scale: keep-last-N retention through Lightning's ModelCheckpoint, asynchronous
distributed-checkpoint saves (torch.distributed.checkpoint.async_save over gloo), and frozen
weights stored in bfloat16."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
import yaml
from safetensors.torch import load_file
from lightning.pytorch.callbacks import ModelCheckpoint

from ovi_pl.models.ovi import OviFusionModel, get_model_config, save_ovi_checkpoint
from ovi_pl.models.ovi.state_dict_adapter import ovi_to_ours
from ovi_pl.training.export import load_training_checkpoint
from ovi_pl.training.memory import MemoryOptions, count_parameters, measured_state_bytes, state_bytes
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ParallelConfig
from ovi_pl.training.strategy import FSDP2Strategy
from ovi_pl.training.synthetic_data import SyntheticLatentDataModule

from conftest import ROOT, randomize_


def test_an_async_saving_fit_keeps_the_last_n_checkpoints_and_they_hold_the_trained_weights(tmp_path):
    torch.manual_seed(0)
    initial = randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=5)
    init = save_ovi_checkpoint(initial, tmp_path / "init.safetensors")
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="fusion", init_checkpoint=str(init),
                            optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
                            parallel=ParallelConfig(compute_dtype="float32", activation_checkpointing=False,
                                                    frozen_dtype="bfloat16"),
                            ema_decay=0.9)
    checkpoints = tmp_path / "checkpoints"
    keep_last = ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=1, save_top_k=2, monitor="step", mode="max",
                                save_last="link")
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=FSDP2Strategy(async_save=True),
                        precision="32-true", max_steps=3, limit_val_batches=0, logger=False, callbacks=[keep_last],
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=SyntheticLatentDataModule(num_samples=4, batch_size=2))

    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt", "last.ckpt"]
    assert os.readlink(checkpoints / "last.ckpt") == "epoch=0-step=3.ckpt"
    # Frozen weights were stored in bf16 (the initial ones, rounded), trainable ones in fp32.
    trained = {k: v.full_tensor() for k, v in module.model.state_dict().items()}
    start = ovi_to_ours(load_file(init))
    frozen = {n for n, p in module.model.named_parameters() if not p.requires_grad}
    assert frozen and all(trained[n].dtype == torch.bfloat16 for n in frozen)
    for name in frozen:
        assert torch.equal(trained[name], start[name].to(torch.bfloat16)), name
    assert all(trained[n].dtype == torch.float32 and not torch.equal(trained[n], start[n])
               for n, p in module.model.named_parameters() if p.requires_grad)
    # bench/memory.py's model of weights, AdamW state and EMA bytes is what this run holds.
    predicted = state_bytes(count_parameters(module.model), MemoryOptions(frozen_bytes=2), ema=True)
    measured = measured_state_bytes(module.model, trainer.optimizers[0], module.ema)
    assert measured == {k: predicted[k] for k in measured}
    # The newest checkpoint, complete once fit returns, holds exactly the weights training ended with.
    saved = load_training_checkpoint(checkpoints / "last.ckpt").state_dict()
    assert saved.keys() == trained.keys()
    for name, value in trained.items():
        assert torch.equal(saved[name], value.float()), name
    averaged = load_training_checkpoint(checkpoints / "last.ckpt", ema=True).state_dict()
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)


def test_async_save_needs_distributed_checkpoints():
    with pytest.raises(ValueError, match="save_distributed_checkpoint"):
        FSDP2Strategy(save_distributed_checkpoint=False, async_save=True)


TRAINING_CONFIGS = sorted(c for c in ROOT.glob("configs/**/*.yaml") if "trainer" in yaml.safe_load(c.read_text()))


@pytest.mark.parametrize("config", TRAINING_CONFIGS, ids=[str(c.relative_to(ROOT / "configs")) for c in TRAINING_CONFIGS])
def test_every_training_config_bounds_the_checkpoints_it_keeps(config):
    callbacks = yaml.safe_load(config.read_text())["trainer"].get("callbacks", [])
    (saver,) = [c["init_args"] for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    keep = saver.get("save_top_k", 1)
    assert keep >= 0, f"{config.name} keeps every checkpoint"
    if keep > 1:  # several kept: the newest ones, by the step counter
        assert (saver.get("monitor"), saver.get("mode")) == ("step", "max"), config.name
