"""The timestep reaches the time embedding unrounded, in a bf16 model and under FSDP2 bf16 compute.

bf16 holds integers near 1000 in steps of 4 (995.9 -> 996.0, 987.4 -> 988.0), and the sinusoid's
fastest component (cos t) swings by up to 0.4 across such a step. The comparisons use a float32
model whose weights are bf16 values, so a bf16 copy holds exactly the same weights and only the
timestep path can differ.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from ovi_pl.models.ovi import OviFusionModel, get_model_config
from ovi_pl.models.ovi.parallelize import parallelize

from conftest import randomize_, tiny_inputs

TIMESTEPS = torch.tensor([995.9, 987.4])
BF16_OUTPUT = {"rtol": 2**-7, "atol": 1e-3}  # the embedding itself is handed on in bf16


@pytest.fixture(scope="module")
def bf16_valued_model() -> OviFusionModel:
    torch.manual_seed(0)
    model = randomize_(OviFusionModel(get_model_config("ovi-tiny"))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def float32_time_embedding(model: OviFusionModel, t: torch.Tensor) -> torch.Tensor:
    tokens = torch.zeros(len(t), 1, model.cfg.video.dim)
    with torch.no_grad():
        emb, _ = model.video._timestep_modulation(t, tokens, (1, 1, 1), first_frame_clean=False)
    return emb


def head_time_embedding(model: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
    """The time embedding the video head receives during a full forward pass."""
    seen: list[torch.Tensor] = []
    hook = model.video.head.register_forward_pre_hook(lambda _, args: seen.append(args[1].detach()))
    x = tiny_inputs(batch=len(t), frames=1)
    try:
        with torch.no_grad():
            model(x["video"], x["audio"], t, x["video_context"], x["audio_context"])
    finally:
        hook.remove()
    return seen[0]


def test_float32_reference_separates_the_timesteps_bf16_would_merge(bf16_valued_model):
    exact = float32_time_embedding(bf16_valued_model, TIMESTEPS)
    merged = float32_time_embedding(bf16_valued_model, TIMESTEPS.to(torch.bfloat16).float())
    assert TIMESTEPS.to(torch.bfloat16).tolist() == [996.0, 988.0]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(merged, exact, **BF16_OUTPUT)


def test_bf16_model_embeds_the_float32_timestep(bf16_valued_model):
    model = copy.deepcopy(bf16_valued_model).to(torch.bfloat16)
    emb = head_time_embedding(model, TIMESTEPS)
    torch.testing.assert_close(emb[:, 0].float(), float32_time_embedding(bf16_valued_model, TIMESTEPS)[:, 0], **BF16_OUTPUT)


def test_fsdp2_bf16_compute_embeds_the_float32_timestep(bf16_valued_model, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = copy.deepcopy(bf16_valued_model)
        parallelize(model, init_device_mesh("cpu", (1,)), param_dtype=torch.bfloat16, activation_checkpointing=False)
        emb = head_time_embedding(model, TIMESTEPS)
    finally:
        dist.destroy_process_group()
    assert emb.dtype == torch.bfloat16  # FSDP2 did compute in bf16
    torch.testing.assert_close(emb[:, 0].float(), float32_time_embedding(bf16_valued_model, TIMESTEPS)[:, 0], **BF16_OUTPUT)
