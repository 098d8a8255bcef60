import pytest
import torch

from ovi_pl.models.ovi import MODEL_CONFIGS, OviFusionModel, apply_freeze_preset, get_model_config


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
