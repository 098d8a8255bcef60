"""Fusion training with a tower that was not loaded from pretrained weights: refused before any
work where the preset freezes the tower's zero head, and learning every modality where it trains it."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from ovi_pl.models.ovi import DiTTower, get_model_config, save_tower
from ovi_pl.training.lora import LoraOptions
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ParallelConfig, ValidationConfig
from ovi_pl.training.strategy import FSDP2Strategy
from ovi_pl.training.synthetic_data import SyntheticLatentDataModule

from conftest import randomize_


@pytest.mark.parametrize(("options", "refused"), [
    ({}, "video and audio tower"),
    ({"audio_init": "audio_tower.safetensors"}, "the video tower"),
    ({"video_init": "Wan2.2-TI2V-5B"}, "the audio tower"),
    ({"video_init": "Wan2.2-TI2V-5B", "audio_init": "audio.safetensors", "freeze_preset": "fusion-fresh-video"}, None),
    ({"audio_init": "audio_tower.safetensors", "freeze_preset": "fusion-fresh-video"}, None),
    ({"freeze_preset": "fusion-fresh-video"}, "the audio tower"),
    ({"freeze_preset": "full"}, None),
    ({"freeze_preset": "full", "lora": LoraOptions(rank=4)}, "LoRA"),
    ({"init_checkpoint": "ovi.safetensors", "lora": LoraOptions(rank=4)}, None),
])
def test_a_frozen_zero_head_on_a_fresh_tower_is_refused_naming_the_fix(options, refused):
    if refused is None:
        FusionTraining(model_config="ovi-tiny", **options)  # nothing is loaded before configure_model
        return
    with pytest.raises(ValueError, match=refused) as err:
        FusionTraining(model_config="ovi-tiny", **options)
    assert "model.video_init" in str(err.value) and "fusion-fresh-video" in str(err.value)


def test_fusion_from_a_fresh_video_tower_moves_every_validation_loss(tmp_path):
    """The demo's fusion step at the tiny size: a random video tower and a pretrained audio tower
    (a randomised stand-in for step 5's export) under the `fusion-fresh-video` preset. With the
    video head frozen at zero (the `fusion` preset), the video loss stayed equal to every digit."""
    torch.manual_seed(0)
    audio = randomize_(DiTTower(get_model_config("ovi-tiny").audio), seed=3)
    with torch.no_grad():
        audio.head.proj.weight.mul_(0.1)
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="fusion-fresh-video",
                            audio_init=str(save_tower(audio, tmp_path / "audio_tower.safetensors")),
                            optimizer=OptimizerConfig(lr=3e-3, warmup_steps=1), validation=ValidationConfig(noise_levels=2),
                            parallel=ParallelConfig(compute_dtype="float32", activation_checkpointing=False),
                            ema_decay=None)
    data = SyntheticLatentDataModule(num_samples=2, batch_size=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=FSDP2Strategy(), precision="32-true", max_steps=2,
                        limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    (before,) = trainer.validate(module, datamodule=data, verbose=False)
    trainer.fit(module, datamodule=data)
    (after,) = trainer.validate(module, datamodule=data, verbose=False)
    for loss in ("val/loss_video", "val/loss_audio"):
        assert abs(after[loss] - before[loss]) > 1e-5 * before[loss], (loss, before[loss], after[loss])
