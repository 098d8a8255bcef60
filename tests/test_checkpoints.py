import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ovi_pl.checkpoint_io import CheckpointMismatchError, load_safetensors, save_safetensors
from ovi_pl.models.ovi import (
    DiTTower,
    OviFusionModel,
    get_model_config,
    load_audio_tower,
    load_ovi_checkpoint,
    load_wan22_video_tower,
    save_ovi_checkpoint,
    save_tower,
)
from ovi_pl.models.ovi.state_dict_adapter import ours_to_ovi, ovi_to_ours, wan22_to_ours

from conftest import randomize_


def outputs(model, inputs):
    with torch.no_grad():
        return model.eval()(**inputs)


@pytest.mark.parametrize("max_shard_bytes", [None, 20_000])
def test_ovi_format_round_trip_gives_identical_outputs(tiny_model, make_inputs, tmp_path, max_shard_bytes):
    written = save_ovi_checkpoint(tiny_model, tmp_path / "model.safetensors", max_shard_bytes=max_shard_bytes)
    if max_shard_bytes:
        assert written.name == "model.safetensors.index.json"
        assert len(set(json.loads(written.read_text())["weight_map"].values())) > 1
        stored_keys = set(load_safetensors(tmp_path))
    else:
        stored_keys = set(load_file(written))
    assert "video_model.blocks.0.modulation.modulation" in stored_keys
    assert "audio_model.patch_embedding.2.w1.weight" in stored_keys
    assert not any(k.startswith(("video.", "audio.")) for k in stored_keys)

    fresh = OviFusionModel(get_model_config("ovi-tiny"))
    load_ovi_checkpoint(fresh, written)
    inputs = make_inputs()
    for ours, theirs in zip(outputs(fresh, inputs), outputs(tiny_model, inputs)):
        assert torch.equal(ours, theirs)


def test_loading_into_a_meta_model_materialises_it(tiny_model, make_inputs, tmp_path):
    path = save_ovi_checkpoint(tiny_model, tmp_path / "model.safetensors")
    with torch.device("meta"):
        model = OviFusionModel(get_model_config("ovi-tiny"))
    load_ovi_checkpoint(model, tmp_path)  # a directory with one checkpoint works too
    assert not any(p.is_meta for p in model.parameters())
    inputs = make_inputs()
    torch.testing.assert_close(outputs(model, inputs), outputs(tiny_model, inputs))
    assert path.exists()


def test_key_renaming_is_a_bijection_on_the_released_geometry():
    with torch.device("meta"):
        model = OviFusionModel(get_model_config("ovi-11b"))
    ours = model.state_dict()
    theirs = ours_to_ovi(ours)
    assert len(theirs) == len(ours)
    assert ovi_to_ours(theirs).keys() == ours.keys()


def test_mismatch_error_names_missing_unexpected_and_misshapen_keys(tiny_model, tmp_path):
    state = ours_to_ovi(tiny_model.state_dict())
    del state["audio_model.blocks.1.ffn.0.weight"]
    state["video_model.blocks.0.extra.weight"] = torch.zeros(3)
    state["video_model.head.head.weight"] = torch.zeros(7, 7)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointMismatchError) as err:
        load_ovi_checkpoint(OviFusionModel(get_model_config("ovi-tiny")), tmp_path / "bad.safetensors")
    message = str(err.value)
    assert "audio.blocks.1.ffn.0.weight" in message and "missing" in message
    assert "video.blocks.0.extra.weight" in message and "unexpected" in message
    assert "video.head.proj.weight: checkpoint (7, 7)" in message


def test_a_missing_shard_is_reported(tiny_model, tmp_path):
    index = save_ovi_checkpoint(tiny_model, tmp_path / "model.safetensors", max_shard_bytes=20_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        load_safetensors(index)


def wan22_style_state(tower: DiTTower) -> dict[str, torch.Tensor]:
    """A video tower written the way Wan2.2's WanModel names it (DESIGN.md section 1): Ovi's names
    without the `video_model.` prefix and with each block's adaLN offset as a bare parameter."""
    state = {}
    for key, value in ours_to_ovi({f"video.{k}": v for k, v in tower.state_dict().items()}).items():
        if "_fusion." in key:
            continue
        key = key.removeprefix("video_model.").replace(".modulation.modulation", ".modulation")
        state[key] = value
    return state


def test_wan22_weights_load_into_the_video_tower_and_leave_fusion_layers(tmp_path, make_inputs):
    source = randomize_(DiTTower(get_model_config("ovi-tiny").video), seed=3)
    state = wan22_style_state(source)
    assert "blocks.0.modulation" in state and "head.modulation" in state and "patch_embedding.weight" in state
    save_safetensors(state, tmp_path / "diffusion_pytorch_model.safetensors", max_shard_bytes=30_000)

    model = OviFusionModel(get_model_config("ovi-tiny"))
    fusion_before = model.video.blocks[0].cross_attn.k_fusion.weight.clone()
    left = load_wan22_video_tower(model, tmp_path)
    assert left and all("_fusion." in k for k in left)
    assert torch.equal(model.video.blocks[0].cross_attn.k_fusion.weight, fusion_before)
    for key, value in source.state_dict().items():
        assert torch.equal(model.video.state_dict()[key], value), key

    # The video tower alone predicts what the Wan tower predicts.
    inputs = make_inputs()
    alone = DiTTower(get_model_config("ovi-tiny").video)
    load_wan22_video_tower(alone, tmp_path)
    args = (inputs["video"], inputs["t"], inputs["video_context"])
    torch.testing.assert_close(alone(*args), source(*args))


def test_wan22_into_an_audio_tower_is_refused(tmp_path):
    with pytest.raises(ValueError, match="video tower"):
        load_wan22_video_tower(DiTTower(get_model_config("ovi-tiny").audio), tmp_path)


def test_pretrained_audio_tower_loads_into_the_fusion_model(tmp_path):
    tower = randomize_(DiTTower(get_model_config("ovi-tiny").audio), seed=4)
    save_tower(tower, tmp_path / "audio_tower.safetensors")
    model = OviFusionModel(get_model_config("ovi-tiny"))
    left = load_audio_tower(model, tmp_path / "audio_tower.safetensors")
    assert sorted(left) == sorted(k for k in model.audio.state_dict() if "_fusion." in k)
    for key, value in tower.state_dict().items():
        assert torch.equal(model.audio.state_dict()[key], value), key
    # A video tower's weights are not an audio tower: the error lists the differences.
    save_tower(DiTTower(get_model_config("ovi-tiny").video), tmp_path / "video_tower.safetensors")
    with pytest.raises(CheckpointMismatchError, match="patch_embedding"):
        load_audio_tower(model, tmp_path / "video_tower.safetensors")


def test_wan22_adaln_offsets_map_to_ours():
    assert set(wan22_to_ours({"blocks.3.modulation": torch.zeros(1), "head.modulation": torch.zeros(1)})) == {
        "video.blocks.3.modulation.offset",
        "video.head.modulation.offset",
    }
