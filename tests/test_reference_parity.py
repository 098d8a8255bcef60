"""Parity with the reference implementation (character-ai/Ovi), through fixtures it produced.

tests/fixtures/ovi_reference/README.md says how they were made: a tiny FusionModel with random
weights ran in bfloat16 on CPU, so outputs agree to bfloat16 accuracy, not bit for bit.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

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
