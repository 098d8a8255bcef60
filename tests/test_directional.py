"""Directional training tasks (video-to-audio, audio-to-video, mixes) and loss balancing of the
fusion stage, on the real tiny model."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from ovi_pl.models.ovi import OviFusionModel, get_model_config
from ovi_pl.training.flow_matching import TaskMix, step_generator
from ovi_pl.training.loss_balance import LossBalancer
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ParallelConfig, ValidationConfig
from ovi_pl.training.strategy import FSDP2Strategy
from ovi_pl.training.synthetic_data import SyntheticLatentDataModule

from conftest import randomize_

MIX = {"joint": 0.4, "video_to_audio": 0.3, "audio_to_video": 0.3}


def batch(size: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "video_latents": torch.randn(size, 48, 3, 4, 6, generator=gen),
        "audio_latents": torch.randn(size, 13, 20, generator=gen),
        "audio_length": torch.full((size,), 13),
        "text_embedding": torch.randn(size, 16, 32, generator=gen),
    }


class ModelInputs:
    """Records what the fusion model is called with and keeps its outputs' gradients."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.args: tuple = ()
        self.kwargs: dict = {}
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        model.register_forward_pre_hook(self.before, with_kwargs=True)
        model.register_forward_hook(self.after)

    def before(self, module, args, kwargs):
        self.args, self.kwargs = args, kwargs

    def after(self, module, args, outputs):
        for out in outputs:
            out.retain_grad()
        self.outputs = outputs


def module_with_model(task, **options) -> tuple[FusionTraining, ModelInputs]:
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="full", task=task, text_dropout=0.0, **options)
    module.model = randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=2)
    return module, ModelInputs(module.model)


@pytest.mark.parametrize("task", ["video_to_audio", "audio_to_video"])
def test_the_conditioning_modality_is_clean_at_t0_and_gets_no_loss(task):
    module, seen = module_with_model(task)
    data = batch()
    losses = module.compute_loss(data, step_generator(0, 0, 0), noise_level=None)
    clean, learned = ("video", "audio") if task == "video_to_audio" else ("audio", "video")
    video_in, audio_in, video_t = seen.args[:3]
    inputs = {"video": video_in, "audio": audio_in}
    times = {"video": video_t, "audio": seen.kwargs["audio_t"]}
    torch.testing.assert_close(inputs[clean], data[f"{clean}_latents"], rtol=0, atol=0)
    assert bool((times[clean] == 0).all()) and bool((times[learned] > 0).all())
    assert not torch.equal(inputs[learned], data[f"{learned}_latents"])
    assert f"loss_{clean}" not in losses and f"loss_{learned}" in losses
    losses["loss"].backward()
    video_pred, audio_pred = seen.outputs
    preds = {"video": video_pred, "audio": audio_pred}
    assert preds[clean].grad is None  # the conditioning prediction is outside the loss
    assert preds[learned].grad.abs().sum() > 0


def test_a_task_mix_draws_per_sample_and_masks_each_samples_loss():
    module, seen = module_with_model(MIX)
    data = batch(size=12)
    losses = module.compute_loss(data, step_generator(0, 3, 0), noise_level=None)
    losses["loss"].backward()
    video_t, audio_t = seen.args[2], seen.kwargs["audio_t"]
    video_to_audio, audio_to_video = video_t == 0, audio_t == 0
    assert video_to_audio.any() and audio_to_video.any() and (~video_to_audio & ~audio_to_video).any()
    assert not (video_to_audio & audio_to_video).any()
    video_grad = seen.outputs[0].grad.flatten(1).abs().sum(1)
    audio_grad = seen.outputs[1].grad.flatten(1).abs().sum(1)
    assert bool((video_grad[video_to_audio] == 0).all()) and bool((video_grad[~video_to_audio] > 0).all())
    assert bool((audio_grad[audio_to_video] == 0).all()) and bool((audio_grad[~audio_to_video] > 0).all())


def test_joint_training_feeds_both_towers_one_time_and_weights_the_losses():
    module, seen = module_with_model("joint")
    losses = module.compute_loss(batch(), step_generator(0, 0, 0), noise_level=None)
    torch.testing.assert_close(seen.args[2], seen.kwargs["audio_t"])
    torch.testing.assert_close(losses["loss_video_weighted"], 0.85 * losses["loss_video"])
    torch.testing.assert_close(losses["loss"], 0.85 * losses["loss_video"] + 0.15 * losses["loss_audio"])


@pytest.mark.parametrize(("task", "message"), [
    ("speech_to_video", "unknown task 'speech_to_video'"),
    ({"joint": 0.5, "video_to_audio": 0.4}, "sum to 1"),
    ({"joint": 1.2, "video_to_audio": -0.2}, "must be >= 0"),
])
def test_bad_tasks_are_refused_naming_the_key(task, message):
    with pytest.raises(ValueError, match=message) as err:
        FusionTraining(model_config="ovi-tiny", freeze_preset="full", task=task)
    assert "model.task" in str(err.value)


def test_a_task_whose_only_loss_has_weight_zero_is_refused():
    with pytest.raises(ValueError, match="model.audio_loss_weight > 0"):
        FusionTraining(model_config="ovi-tiny", freeze_preset="full", task="video_to_audio", audio_loss_weight=0.0)


def test_running_balance_equalises_modalities_whose_raw_losses_differ_tenfold():
    balancer = LossBalancer({"video": 0.5, "audio": 0.5}, mode="running", decay=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        jitter = 1 + 0.1 * torch.randn(2, generator=gen)
        raw = {"video": 10.0 * jitter[0], "audio": 1.0 * jitter[1]}
        balancer.update({k: float(v) for k, v in raw.items()})
        terms = balancer.weighted(raw)
    ratio = float(terms["video"] / terms["audio"])
    assert 0.7 < ratio < 1.4, ratio
    fixed = LossBalancer({"video": 0.5, "audio": 0.5}).weighted(raw)
    assert float(fixed["video"] / fixed["audio"]) > 7


@pytest.mark.parametrize(("task", "balance", "logged", "absent"), [
    ("video_to_audio", "fixed", {"train/loss_audio"}, {"train/loss_video"}),
    ("audio_to_video", "fixed", {"train/loss_video"}, {"train/loss_audio"}),
    (MIX, "running", {"train/loss_video", "train/loss_audio", "train/loss_video_weighted"}, set()),
])
def test_a_short_fit_of_each_task_trains_and_logs_its_losses(tmp_path, task, balance, logged, absent):
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="full", task=task, loss_balance=balance,
                            optimizer=OptimizerConfig(lr=3e-3, warmup_steps=1), validation=ValidationConfig(noise_levels=1),
                            parallel=ParallelConfig(compute_dtype="float32", activation_checkpointing=False),
                            ema_decay=None)
    data = SyntheticLatentDataModule(num_samples=4, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=FSDP2Strategy(), precision="32-true", max_steps=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    assert trainer.global_step == 2 and torch.isfinite(metrics["train/loss"])
    assert logged <= set(metrics) and not absent & set(metrics)
    if balance == "running":
        # Each term is its weight times a loss divided by its own running magnitude: near the weight.
        assert set(module.loss_balancer.magnitudes) == {"video", "audio"}
        assert 0.5 * 0.85 < float(metrics["train/loss_video_weighted"]) < 2 * 0.85


def test_running_loss_magnitudes_travel_in_checkpoints():
    """A resumed run divides by the magnitudes it had, not by the first losses it sees again."""
    saved = FusionTraining(model_config="ovi-tiny", freeze_preset="full", loss_balance="running")
    saved.loss_balancer.update({"video": 4.0, "audio": 0.5})
    saved.loss_balancer.update({"video": 2.0, "audio": 1.5})
    checkpoint: dict = {}
    saved.on_save_checkpoint(checkpoint)
    resumed = FusionTraining(model_config="ovi-tiny", freeze_preset="full", loss_balance="running")
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.loss_balancer.magnitudes == pytest.approx({"video": 0.99 * 4.0 + 0.01 * 2.0,
                                                              "audio": 0.99 * 0.5 + 0.01 * 1.5})
