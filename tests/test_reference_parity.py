"""Parity with the reference implementation (character-ai/Ovi), through fixtures it produced.

tests/fixtures/ovi_reference/README.md says how they were made: a tiny FusionModel with random
weights ran in bfloat16 on CPU, so model outputs agree to bfloat16 accuracy, not bit for bit; the
reference's sampling loop ran in float32, so sampled latents agree to float32 rounding.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ovi_pl.generation import Conditioning, FlowSolver, SamplerConfig, sample
from ovi_pl.models.ovi import OviFusionModel, get_model_config, load_ovi_checkpoint
from ovi_pl.models.ovi.state_dict_adapter import ours_to_ovi, wan22_to_ours

FIXTURES = Path(__file__).parent / "fixtures" / "ovi_reference"


def shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ovi_11b_on_meta() -> OviFusionModel:
    with torch.device("meta"):
        return OviFusionModel(get_model_config("ovi-11b"))


def test_released_checkpoint_keys_and_shapes_match_ovi(ovi_11b_on_meta):
    reference = json.loads((FIXTURES / "keys_ovi_fusion_11b.json").read_text())
    ours = {k: list(v.shape) for k, v in ours_to_ovi(ovi_11b_on_meta.state_dict()).items()}
    assert ours == reference


def test_released_parameter_counts_match_ovi(ovi_11b_on_meta):
    counts = json.loads((FIXTURES / "param_counts_11b.json").read_text())
    assert sum(p.numel() for p in ovi_11b_on_meta.parameters()) == counts["total"]
    assert sum(p.numel() for p in ovi_11b_on_meta.video.parameters()) == counts["video_model"]
    assert sum(p.numel() for p in ovi_11b_on_meta.audio.parameters()) == counts["audio_model"]


def test_wan22_ti2v_5b_keys_map_onto_the_video_tower(ovi_11b_on_meta):
    wan = json.loads((FIXTURES / "keys_wan22_ti2v_5b.json").read_text())
    mapped = {k.removeprefix("video."): v for k, v in wan22_to_ours({k: torch.empty(0) for k in wan}).items()}
    ours = shapes(ovi_11b_on_meta.video)
    assert {k: wan[old] for k, old in zip(mapped, wan)} == {k: s for k, s in ours.items() if "_fusion." not in k}


@pytest.mark.parametrize("case, first_frame_clean", [("io_t2v", False), ("io_i2v", True)])
def test_outputs_match_the_reference_implementation(case, first_frame_clean):
    model = OviFusionModel(get_model_config("ovi-tiny")).eval()
    load_ovi_checkpoint(model, FIXTURES / "tiny_fusion.safetensors")
    io = load_file(FIXTURES / f"{case}.safetensors")
    with torch.no_grad():
        video, audio = model(
            io["video"], io["audio"], io["t"], io["video_context"], io["audio_context"],
            audio_lengths=io["audio_lens"], first_frame_clean=first_frame_clean,
        )
    valid = torch.arange(audio.shape[1])[None, :] < io["audio_lens"][:, None]
    for ours, theirs in ((video, io["video_out"]), (audio[valid], io["audio_out"][valid])):
        relative_error = (ours - theirs).norm() / theirs.norm()
        assert relative_error < 0.02, f"{case}: relative L2 error {relative_error:.4f}"


# ---------------------------------------------------------------------------- sampling loop


@pytest.mark.parametrize("solver", ["unipc", "euler"])
def test_sampler_feeds_the_reference_timesteps(solver):
    expected = load_file(FIXTURES / "sampling.safetensors")[f"{solver}_timesteps_50"]
    ours = FlowSolver(solver, steps=50, shift=5.0).model_times
    assert ours.tolist() == expected.float().tolist()


@pytest.mark.parametrize("case", ["unipc_t2v", "unipc_i2v", "euler_t2v"])
def test_sampled_latents_match_the_reference_sampling_loop(case):
    """Same tiny weights, noise and contexts as the reference's loop; its guidance, solvers and
    image-to-video handling: the latents agree to float32 rounding after 4 guided steps."""
    fix = load_file(FIXTURES / "sampling.safetensors")
    model = OviFusionModel(get_model_config("ovi-tiny")).eval()
    load_ovi_checkpoint(model, FIXTURES / "tiny_fusion.safetensors")
    solver, mode = case.split("_")
    cond = Conditioning(fix["context"][None], fix["context"][None],
                        fix["video_negative_context"][None], fix["audio_negative_context"][None])
    cfg = SamplerConfig(solver=solver, steps=4, shift=5.0, video_guidance=4.0, audio_guidance=3.0, skip_layer=1)
    first = fix["first_frame"][None] if mode == "i2v" else None
    video, audio = sample(model, fix["video_noise"][None], fix["audio_noise"][None], cond, cfg, first_frame=first)
    torch.testing.assert_close(video[0], fix[f"{case}_video"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(audio[0], fix[f"{case}_audio"], rtol=1e-5, atol=1e-5)
