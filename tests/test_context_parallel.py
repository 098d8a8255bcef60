"""Ulysses context parallel on CPU (gloo): two ranks splitting every sample's tokens compute what
one rank computes alone, and a 2 data x 2 context run resumes, trains and checkpoints as plain
data parallel does."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from safetensors.torch import load_file

from ovi_pl.models.ovi import DiTTower, OviFusionModel, get_model_config
from ovi_pl.models.ovi.parallelize import parallelize
from ovi_pl.training.export import export_checkpoint
from ovi_pl.training.flow_matching import length_mask, masked_mse
from ovi_pl.training.modules import FusionTraining, ParallelConfig

from conftest import randomize_, tiny_inputs
from test_training import checkpoint, common, fit, initial_weights  # noqa: F401 (a fixture)

# Token counts that two ranks cannot split evenly (9 video tokens, 13 audio latents), so both
# towers are padded for context parallel; the second clip's real audio ends in rank 0's half.
GEOMETRY = {"frames": 3, "audio_len": 13}
VIDEO_SHAPE = (2, 48, 3, 2, 6)
AUDIO_LENGTHS = torch.tensor([13, 5])


def fusion_loss(model: nn.Module, first_frame_clean: bool) -> tuple[torch.Tensor, ...]:
    inputs = tiny_inputs(**GEOMETRY)
    inputs["video"] = torch.randn(VIDEO_SHAPE, generator=torch.Generator().manual_seed(1))
    video, audio = model(**inputs, audio_lengths=AUDIO_LENGTHS, first_frame_clean=first_frame_clean)
    mask = length_mask(AUDIO_LENGTHS, audio.shape[1])
    loss = 0.85 * masked_mse(video, inputs["video"]) + 0.15 * masked_mse(audio, inputs["audio"], mask)
    loss.backward()
    return loss.detach(), video.detach(), audio.detach()


def tower_loss(model: nn.Module) -> tuple[torch.Tensor, ...]:
    inputs = tiny_inputs(**GEOMETRY)
    audio = model(inputs["audio"], inputs["t"], inputs["audio_context"], lengths=AUDIO_LENGTHS)
    loss = masked_mse(audio, inputs["audio"], length_mask(AUDIO_LENGTHS, audio.shape[1]))
    loss.backward()
    return loss.detach(), audio.detach()


def full_gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad)
        for name, p in model.named_parameters()
        if p.grad is not None
    }


def assert_same_run(reference: nn.Module, parallel: nn.Module, run) -> None:
    expected, actual = run(reference), run(parallel)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e)
    expected_grads, actual_grads = full_gradients(reference), full_gradients(parallel)
    assert expected_grads.keys() == actual_grads.keys()
    for name, grad in expected_grads.items():
        assert grad.abs().sum() > 0, name  # every parameter takes part in the compared loss
        torch.testing.assert_close(actual_grads[name], grad, msg=name)


def _two_rank_worker(rank: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        mesh = init_device_mesh("cpu", (1, 2), mesh_dim_names=("data_parallel", "context_parallel"))
        torch.manual_seed(0)
        fusion = randomize_(OviFusionModel(get_model_config("ovi-tiny")))
        tower = randomize_(DiTTower(get_model_config("ovi-tiny").audio))
        for first_frame_clean in (False, True):
            reference = copy.deepcopy(fusion)
            parallel = parallelize(copy.deepcopy(fusion), mesh, param_dtype=torch.float32)
            assert_same_run(reference, parallel, lambda m: fusion_loss(m, first_frame_clean))
        parallel = parallelize(copy.deepcopy(tower), mesh, param_dtype=torch.float32)
        assert_same_run(copy.deepcopy(tower), parallel, tower_loss)
    finally:
        dist.destroy_process_group()


def test_two_rank_context_parallel_forward_and_backward_equal_one_rank(tmp_path):
    # Runs fusion (text-to-video and image-to-video) and audio-tower passes with activation
    # checkpointing and FSDP2 over both ranks; a mismatch raises in the worker and fails here.
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "store"),), nprocs=2)


def test_two_data_by_two_context_ranks_resume_train_and_checkpoint_like_two_data_parallel_ranks(
    tmp_path, initial_weights
):
    # 2 plain data-parallel ranks train 4 steps; 2 data x 2 context ranks resume their step-2
    # distributed checkpoint and train steps 3 and 4. Each context group must restore the data
    # position of its data-parallel rank, read that rank's samples, draw its noise and compute
    # whole-sample gradients to end where the plain run does; its own step-4 checkpoint is read back.
    context, plain = tmp_path / "context", tmp_path / "plain"
    context.mkdir(), plain.mkdir()
    args = [*common(initial_weights), "--trainer.limit_val_batches=0"]
    fit(plain, *args, "--trainer.devices=2", "--trainer.max_steps=4")
    fit(context, *args, "--trainer.devices=4", "--model.parallel.context_parallel=2", "--trainer.max_steps=4",
        f"--ckpt_path={checkpoint(plain, 2)}")

    for ema in (False, True):
        expected = load_file(export_checkpoint(checkpoint(plain, 4), tmp_path / f"plain-{ema}.safetensors", ema=ema))
        resumed = load_file(export_checkpoint(checkpoint(context, 4), tmp_path / f"cp-{ema}.safetensors", ema=ema))
        assert expected.keys() == resumed.keys()
        for name in expected:
            torch.testing.assert_close(resumed[name], expected[name], msg=name)


@pytest.mark.parametrize(
    "size, message", [(3, "context_parallel=3 must divide the 4 attention heads"), (0, "context_parallel=0 must be")]
)
def test_a_context_parallel_size_that_cannot_work_is_refused_naming_the_key(size, message):
    with pytest.raises(ValueError, match=f"model.parallel.{message}"):
        FusionTraining(model_config="ovi-tiny", freeze_preset="full", parallel=ParallelConfig(context_parallel=size))
