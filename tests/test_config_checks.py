"""Training config values are checked before any work, with messages that name the key; the
sample callback logs preview stand-ins only when asked to, and never as samples."""

from __future__ import annotations

import pytest

from ovi_pl.generation.components import GenerationEncoders
from ovi_pl.training.lora import LoraOptions
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ValidationConfig
from ovi_pl.training.sample_callback import SampleVideoCallback

from conftest import ROOT, run_ovi_pl


@pytest.mark.parametrize(("make", "key"), [
    (lambda: OptimizerConfig(lr=0.0), "model.optimizer.lr=0.0"),
    (lambda: OptimizerConfig(lr=-1e-4), "model.optimizer.lr"),
    (lambda: OptimizerConfig(betas=(0.9, 1.0)), "model.optimizer.betas"),
    (lambda: OptimizerConfig(betas=(0.9,)), "model.optimizer.betas"),
    (lambda: OptimizerConfig(eps=0.0), "model.optimizer.eps"),
    (lambda: OptimizerConfig(weight_decay=-0.1), "model.optimizer.weight_decay"),
    (lambda: OptimizerConfig(warmup_steps=-1), "model.optimizer.warmup_steps"),
    (lambda: OptimizerConfig(grad_clip_norm=0.0), "model.optimizer.grad_clip_norm"),
    (lambda: ValidationConfig(noise_levels=0), "model.validation.noise_levels"),
    (lambda: LoraOptions(rank=0), "model.lora.rank"),
    (lambda: LoraOptions(alpha=0.0), "model.lora.alpha"),
    (lambda: LoraOptions(dropout=1.0), "model.lora.dropout"),
    (lambda: FusionTraining("ovi-tiny", "full", video_loss_weight=-0.85), "model.video_loss_weight"),
    (lambda: FusionTraining("ovi-tiny", "full", video_loss_weight=0.0, audio_loss_weight=0.0), "both 0"),
    (lambda: FusionTraining("ovi-tiny", "full", image_to_video_prob=1.5), "model.image_to_video_prob"),
    (lambda: FusionTraining("ovi-tiny", "full", ema_decay=1.0), "model.ema_decay"),
    (lambda: FusionTraining("ovi-tiny", "full", text_dropout=1.0), "model.text_dropout"),
])
def test_a_bad_training_value_is_refused_naming_its_key(make, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.").replace("(", r"\(")):
        make()


def test_a_bad_value_in_a_config_fails_before_any_work(tmp_path):
    result = run_ovi_pl(tmp_path, "fit", "--config", str(ROOT / "configs/tiny_fusion.yaml"), "--model.optimizer.lr=0")
    assert result.returncode != 0
    assert "model.optimizer.lr=0.0 must be > 0" in result.stderr
    assert not (tmp_path / "runs").exists()  # not even the MLflow store


PROMPTS = ["A man says <S>hello<E>. <AUDCAP>Clear male speech.<ENDAUDCAP>"]


@pytest.mark.parametrize(("encoders", "unset"), [
    (GenerationEncoders(), "encoders.text_encoder, encoders.video_vae, encoders.audio_vae and vocoder unset"),
    (GenerationEncoders(text_encoder="umt5", video_vae="wan_vae"), "encoders.audio_vae and vocoder unset"),
])
def test_preview_stand_ins_are_refused_unless_asked_for(encoders, unset):
    with pytest.raises(ValueError, match=unset) as err:
        SampleVideoCallback(PROMPTS, encoders=encoders)
    assert "previews: true" in str(err.value)


def test_asked_for_previews_are_logged_as_previews_and_real_encoders_as_samples():
    assert SampleVideoCallback(PROMPTS, previews=True).artifact_dir == "previews"
    assert SampleVideoCallback(PROMPTS, encoders=GenerationEncoders(text_encoder="umt5"), previews=True).artifact_dir \
        == "previews"
    real = GenerationEncoders(text_encoder="umt5", video_vae="wan_vae", audio_vae="v1-16.pth", vocoder="netG.pt")
    assert SampleVideoCallback(PROMPTS, encoders=real).artifact_dir == "samples"
