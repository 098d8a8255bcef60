"""LoRA fine-tuning: base weights stay frozen, merged exports are plain Ovi checkpoints, FSDP2 runs work."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from ovi_pl.models.ovi import OviFusionModel, get_model_config, load_ovi_checkpoint, save_ovi_checkpoint
from ovi_pl.training.export import export_checkpoint
from ovi_pl.training.lora import LoraOptions, inject_lora, is_lora_parameter, lora_layers, merge_lora

from conftest import ROOT, randomize_, run_ovi_pl, tiny_inputs


def test_adapters_train_base_weights_do_not_and_the_merged_export_is_a_plain_model(tmp_path):
    torch.manual_seed(0)
    model = randomize_(OviFusionModel(get_model_config("ovi-tiny"))).eval()
    base = copy.deepcopy(model.state_dict())
    inputs = tiny_inputs()
    with torch.no_grad():
        original = model(**inputs)
    inject_lora(model, LoraOptions(rank=4, alpha=8.0))
    assert len(list(lora_layers(model))) == 2 * 2 * 10  # towers x blocks x projections
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_lora_parameter(n) for n in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        video, audio = model(**inputs)
        (video.square().mean() + audio.square().mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in model.named_parameters():
        if not is_lora_parameter(name):
            assert torch.equal(param, base[name.replace(".base_layer", "")]), f"base weight {name} changed"
    with torch.no_grad():
        adapted = model(**inputs)

    merge_lora(model)
    path = save_ovi_checkpoint(model, tmp_path / "merged.safetensors")
    plain = OviFusionModel(get_model_config("ovi-tiny")).eval()
    load_ovi_checkpoint(plain, path)  # strict: a merged export has exactly the plain keys
    with torch.no_grad():
        merged = plain(**inputs)
    for a, b, before in zip(adapted, merged, original):
        assert not torch.allclose(a, before, atol=1e-3)  # the adapters did change the model
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    changed = {k for k, v in plain.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all(k.endswith("weight") and ("attn" in k) for k in changed)


def test_unknown_target_modules_fail_naming_the_option():
    with pytest.raises(ValueError, match="lora.target_modules"):
        inject_lora(OviFusionModel(get_model_config("ovi-tiny")), LoraOptions(target_modules=("attn.qq",)))


def test_fsdp2_lora_run_exports_merged_ovi_weights(tmp_path):
    """Two ranks, adapters injected before sharding, initial weights loaded under plain names."""
    torch.manual_seed(0)
    init = save_ovi_checkpoint(randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=5),
                               tmp_path / "init.safetensors")
    result = run_ovi_pl(
        tmp_path, "fit", "--config", str(ROOT / "configs/tiny_fusion.yaml"), "--trainer.devices=2",
        "--trainer.max_steps=2", "--data.num_samples=4", "--model.lora.rank=4",
        f"--model.init_checkpoint={init}", "--model.optimizer.lr=3e-2",
    )
    assert result.returncode == 0, result.stderr[-6000:]
    (ckpt,) = tmp_path.glob("runs/tiny_fusion/*/*/checkpoints/epoch=0-step=2.ckpt")
    exported = load_file(export_checkpoint(ckpt, tmp_path / "merged.safetensors"))
    initial = load_file(init)
    assert exported.keys() == initial.keys()
    changed = sorted(k for k in exported if not torch.equal(exported[k], initial[k]))
    # Exactly the 40 adapted projection matrices moved (by B A); biases, norms, FFNs did not.
    assert len(changed) == 40 and all(k.endswith("weight") and "attn." in k for k in changed), changed
    load_ovi_checkpoint(OviFusionModel(get_model_config("ovi-tiny")), tmp_path / "merged.safetensors")
