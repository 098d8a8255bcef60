"""Fusion training with a tower that was not loaded from pretrained weights: refused before any
work where the preset freezes the tower's zero head, and learning every modality where it trains it."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from ovi_pl.models.ovi import DiTTower, get_model_config, save_tower
from ovi_pl.training.modules import (
    FusionTraining,
    OptimizerConfig,
    ParallelConfig,
    ValidationConfig,
    refuse_frozen_fresh_towers,
)
from ovi_pl.training.strategy import FSDP2Strategy
from ovi_pl.training.synthetic_data import SyntheticLatentDataModule

from conftest import randomize_


@pytest.mark.parametrize(("fresh", "preset", "lora", "refused"), [
    (["video", "audio"], "fusion", False, "video and audio tower"),
    (["video"], "fusion", False, "the video tower"),
    (["audio"], "fusion", False, "the audio tower"),
    ([], "fusion", False, None),
    (["video"], "fusion-fresh-video", False, None),
    (["audio"], "fusion-fresh-video", False, "the audio tower"),
    (["video", "audio"], "full", False, None),
    (["video"], "full", True, "LoRA"),
    ([], "full", True, None),
])
def test_a_frozen_zero_head_on_a_fresh_tower_is_refused_naming_the_fix(fresh, preset, lora, refused):
    if refused is None:
        refuse_frozen_fresh_towers(fresh, preset, lora)
        return
    with pytest.raises(ValueError, match=refused) as err:
        refuse_frozen_fresh_towers(fresh, preset, lora)
    assert "model.video_init" in str(err.value) and "fusion-fresh-video" in str(err.value)


def test_fit_refuses_a_fresh_video_tower_under_the_fusion_preset_before_building_the_model(tmp_path):
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="fusion", audio_init="audio_tower.safetensors")
    assert module.fresh_towers == ["video"]
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=FSDP2Strategy(), max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="the video tower"):
        trainer.fit(module, datamodule=SyntheticLatentDataModule(num_samples=2, batch_size=2))
    assert module.model is None  # refused before configure_model built or loaded anything


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
