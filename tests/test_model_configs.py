import math
import sys

import pytest
import torch
import yaml

from ovi_pl.generation.cli import parse_config
from ovi_pl.models.ovi import MODEL_CONFIGS, OviFusionModel, apply_freeze_preset, get_model_config
from ovi_pl.training.cli import run_training_cli

from conftest import ROOT


def _count(module: torch.nn.Module, where=lambda name: True) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if where(name))


@pytest.fixture(scope="module")
def ovi_11b_on_meta() -> OviFusionModel:
    with torch.device("meta"):
        return OviFusionModel(get_model_config("ovi-11b"))


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_every_shipped_config_builds_on_meta(name):
    with torch.device("meta"):
        model = OviFusionModel(get_model_config(name))
    assert all(p.is_meta for p in model.parameters())
    assert len(model.video.blocks) == len(model.audio.blocks) == MODEL_CONFIGS[name].video.num_layers


def test_ovi_11b_has_the_released_size(ovi_11b_on_meta):
    model = ovi_11b_on_meta
    total = _count(model)
    assert abs(total - 11.66e9) / 11.66e9 < 0.005
    fusion = _count(model, lambda n: "_fusion." in n)
    assert abs(fusion - 1.13e9) / 1.13e9 < 0.01
    assert abs(_count(model.video) - fusion / 2 - 5.00e9) / 5.00e9 < 0.01
    assert abs(_count(model.audio) - fusion / 2 - 5.53e9) / 5.53e9 < 0.01


def test_fusion_preset_trains_attention_and_text_embedding_only(ovi_11b_on_meta):
    model = ovi_11b_on_meta
    trainable, total = apply_freeze_preset(model, "fusion")
    assert abs(trainable - 5.7e9) / 5.7e9 < 0.005
    assert total == _count(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    for name in ("video.blocks.3.ffn.0.weight", "audio.blocks.0.modulation.offset", "video.blocks.0.norm3.weight",
                 "audio.head.proj.weight", "video.patch_embedding.proj.weight", "audio.time_embedding.0.weight"):
        assert name in frozen
    for name in ("video.blocks.3.self_attn.q.weight", "audio.blocks.7.cross_attn.k_fusion.weight",
                 "audio.blocks.7.cross_attn.pre_attn_norm_fusion.weight", "video.text_embedding.2.bias"):
        assert name not in frozen


def test_audio_pretrain_preset_trains_the_audio_tower_without_fusion_layers():
    model = OviFusionModel(get_model_config("ovi-tiny"))
    trainable, _ = apply_freeze_preset(model, "audio-pretrain")
    expected = _count(model.audio, lambda n: "_fusion." not in n)
    assert trainable == expected
    assert not any(p.requires_grad for p in model.video.parameters())


def test_unknown_names_fail_with_the_choices():
    with pytest.raises(KeyError, match="ovi-11b"):
        get_model_config("ovi-12b")
    with pytest.raises(KeyError, match="fusion"):
        apply_freeze_preset(torch.nn.Linear(2, 2), "everything")


def test_overrides_apply_to_both_towers_and_bad_geometry_is_rejected():
    cfg = get_model_config("ovi-tiny", num_layers=3)
    assert cfg.video.num_layers == cfg.audio.num_layers == 3
    with pytest.raises(ValueError, match="divisible"):
        get_model_config("ovi-tiny", num_heads=5)


# ---------------------------------------------------------------------------- released checkpoints

# name -> (generate config, video tokens per sample at its geometry, audio latents), from the
# reference's per-model spec: 31 or 61 latent frames, 157 or 314 audio latents.
RELEASED = {
    "ovi-11b-720x720-5s": ("ovi_11b_720x720_5s.yaml", 31 * 22 * 22, 157),
    "ovi-11b-960x960-5s": ("ovi_11b_960x960_5s.yaml", 31 * 30 * 30, 157),
    "ovi-11b-960x960-10s": ("ovi_11b_960x960_10s.yaml", 61 * 30 * 30, 314),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_configs_embed_the_reference_token_counts(name):
    """The generate config's clip, through the model's own patch embeddings on the meta device."""
    config_file, video_tokens, audio_latents = RELEASED[name]
    cfg = parse_config(["--config", str(ROOT / "configs/generate" / config_file)])
    assert cfg.model_config == name
    geometry = cfg.geometry.for_model(get_model_config(name))
    with torch.device("meta"):
        model = OviFusionModel(get_model_config(name))
        video, grid = model.video.patch_embedding(torch.empty(1, *geometry.video_latent_shape))
        audio, _ = model.audio.patch_embedding(torch.empty(1, *geometry.audio_latent_shape), None)
    assert video.shape[1] == video_tokens and math.prod(grid) == video_tokens
    assert audio.shape[1] == audio_latents == get_model_config(name).clip.audio_latents
    assert get_model_config(name).clip.video_tokens(geometry.height, geometry.width, (1, 2, 2)) == video_tokens


def test_released_configs_share_the_ovi_11b_weights(ovi_11b_on_meta):
    shapes = {k: v.shape for k, v in ovi_11b_on_meta.state_dict().items()}
    for name in RELEASED:
        with torch.device("meta"):
            model = OviFusionModel(get_model_config(name))
        assert {k: v.shape for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize("config", sorted((ROOT / "configs/generate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_generate_config_parses_and_fits_its_model(config):
    cfg = parse_config(["--config", str(config)])
    geometry = cfg.geometry.for_model(get_model_config(cfg.model_config))
    assert geometry.video_latent_shape[0] == 48 and geometry.audio_latents > 0


@pytest.mark.parametrize("config", sorted((ROOT / "configs/finetune").glob("*.yaml")), ids=lambda p: p.name)
def test_every_finetune_config_parses_for_its_released_clip(config, capsys, monkeypatch):
    """In process (configs/*.yaml get a subprocess each in test_training.py); --print_config exits 0."""
    monkeypatch.setattr(sys, "argv", ["python -m ovi_pl"])
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    model_args, data_args = printed["model"]["init_args"], printed["data"]["init_args"]
    clip = get_model_config(model_args["model_config"]).clip
    assert model_args["init_checkpoint"].endswith(clip.checkpoint_file)
    assert data_args["num_frames"] == clip.num_frames and data_args["target_area"] == clip.frame_area
