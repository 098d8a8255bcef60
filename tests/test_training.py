"""End-to-end training runs through `python -m ovi_pl fit` on CPU (gloo), with real FSDP2,
real distributed checkpoints and a real MLflow store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from ovi_pl.models.ovi import OviFusionModel, apply_freeze_preset, get_model_config, save_ovi_checkpoint
from ovi_pl.models.ovi.state_dict_adapter import ovi_to_ours
from ovi_pl.training.export import export_checkpoint

from conftest import ROOT, ovi_pl_in_process, randomize_, run_ovi_pl

# Training configs are the shipped ones with a `trainer` section (curation and generation have their own).
CONFIGS = sorted(c for c in (ROOT / "configs").glob("*.yaml") if "trainer" in yaml.safe_load(c.read_text()))


def fit(workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
    result = run_ovi_pl(workdir, "fit", "--config", str(ROOT / "configs/tiny_fusion.yaml"), *overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def checkpoint(workdir: Path, step: int) -> Path:
    (found,) = workdir.glob(f"runs/tiny_fusion/*/*/checkpoints/epoch=*-step={step}.ckpt")
    return found


def mlflow_client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'runs/tiny_fusion/mlflow.db'}")


@pytest.fixture(scope="module")
def initial_weights(tmp_path_factory) -> Path:
    """A tiny fusion model with non-zero heads, standing in for Wan2.2 + a stage-1 audio tower:
    with the reference's zero-initialised heads, the fusion preset would have nothing to learn."""
    torch.manual_seed(0)
    model = randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=5)
    with torch.no_grad():
        for tower in (model.video, model.audio):
            tower.head.proj.weight.mul_(0.1)
    path = tmp_path_factory.mktemp("init") / "ovi-tiny.safetensors"
    return save_ovi_checkpoint(model, path)


def common(initial_weights: Path) -> list[str]:
    return [f"--model.init_checkpoint={initial_weights}", "--model.freeze_preset=fusion", "--data.num_samples=4",
            "--model.optimizer.lr=3e-3"]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, initial_weights) -> Path:
    workdir = tmp_path_factory.mktemp("two_process")
    fit(workdir, *common(initial_weights), "--trainer.devices=2", "--trainer.max_steps=8", "--trainer.val_check_interval=4")
    return workdir


def test_two_process_fsdp2_run_lowers_the_validation_loss(two_process_run):
    client = mlflow_client(two_process_run)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-tiny-fusion").experiment_id])
    val = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)]
    assert len(val) == 2 and val[1] < val[0]


def test_mlflow_run_holds_params_metrics_and_the_config(two_process_run):
    client = mlflow_client(two_process_run)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-tiny-fusion").experiment_id])
    assert run.data.params["model_config"] == "ovi-tiny"
    assert run.data.params["freeze_preset"] == "fusion"
    for metric in ("train/loss", "train/loss_video", "train/loss_audio", "train/grad_norm", "lr-AdamW",
                   "train/device/samples_per_sec", "train/device/items_per_sec", "val/loss"):
        assert metric in run.data.metrics, metric
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 8
    config_file = client.download_artifacts(run.info.run_id, "config.yaml", str(two_process_run))
    config = yaml.safe_load(Path(config_file).read_text())
    assert str(config["trainer"]["devices"]) == "2"
    assert config["model"]["init_args"]["optimizer"]["lr"] == 3e-3


def test_frozen_weights_stay_bit_identical_and_trainable_ones_change(two_process_run, initial_weights):
    initial = ovi_to_ours(load_file(initial_weights))
    final = ovi_to_ours(load_file(export_checkpoint(checkpoint(two_process_run, 8), two_process_run / "final.safetensors")))
    reference = OviFusionModel(get_model_config("ovi-tiny"))
    apply_freeze_preset(reference, "fusion")
    trainable = {n for n, p in reference.named_parameters() if p.requires_grad}
    assert trainable and len(trainable) < len(initial)
    for name, before in initial.items():
        if name in trainable:
            assert not torch.equal(final[name], before), f"{name} did not train"
        else:
            assert torch.equal(final[name], before), f"frozen {name} changed"


def test_ema_export_differs_from_the_raw_weights_only_where_trainable(two_process_run):
    ckpt = checkpoint(two_process_run, 8)
    raw = load_file(export_checkpoint(ckpt, two_process_run / "raw.safetensors"))
    ema = load_file(export_checkpoint(ckpt, two_process_run / "ema.safetensors", ema=True))
    differing = {k for k in raw if not torch.equal(raw[k], ema[k])}
    assert differing and all(("attn" in k or "text_embedding" in k) for k in differing)


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, initial_weights):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    straight.mkdir(), interrupted.mkdir()
    fit(straight, *common(initial_weights), "--trainer.devices=2", "--trainer.max_steps=4")
    fit(interrupted, *common(initial_weights), "--trainer.devices=2", "--trainer.max_steps=2")
    fit(interrupted, *common(initial_weights), "--trainer.devices=2", "--trainer.max_steps=4",
        f"--ckpt_path={checkpoint(interrupted, 2)}")

    expected = load_file(export_checkpoint(checkpoint(straight, 4), tmp_path / "a.safetensors"))
    resumed = load_file(export_checkpoint(checkpoint(interrupted, 4), tmp_path / "b.safetensors"))
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    expected_ema = load_file(export_checkpoint(checkpoint(straight, 4), tmp_path / "c.safetensors", ema=True))
    resumed_ema = load_file(export_checkpoint(checkpoint(interrupted, 4), tmp_path / "d.safetensors", ema=True))
    for name in expected_ema:
        torch.testing.assert_close(resumed_ema[name], expected_ema[name], rtol=1e-5, atol=1e-6, msg=name)

    # The resumed process logged into the same MLflow run, continuing its step count.
    client = mlflow_client(interrupted)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-tiny-fusion").experiment_id])
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == [0, 1, 2, 3]

    # A checkpoint from 2 ranks resumes on 1: distributed checkpoints reshard on load.
    fit(interrupted, *common(initial_weights), "--trainer.devices=1", "--trainer.max_steps=4",
        f"--ckpt_path={checkpoint(interrupted, 2)}", "--trainer.default_root_dir=runs/one_rank")
    (one_rank,) = interrupted.glob("runs/one_rank/*/*/checkpoints/epoch=*-step=4.ckpt")
    assert load_file(export_checkpoint(one_rank, tmp_path / "e.safetensors")).keys() == expected.keys()


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_shipped_config_parses(config, capsys):
    assert ovi_pl_in_process("fit", "--config", str(config), "--print_config") == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("ovi_pl.training.modules.")


def test_unknown_config_keys_fail_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert ovi_pl_in_process("fit", "--config", str(ROOT / "configs/tiny_fusion.yaml"), "--model.optimiser.lr=1") != 0
    assert "optimiser" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_audio_pretraining_feeds_fusion_training(tmp_path):
    """Stage 1 trains a padded audio tower; its exported EMA tower initialises stage 2's audio tower."""
    stage1 = run_ovi_pl(tmp_path, "fit", "--config", str(ROOT / "configs/tiny_audio_pretrain.yaml"),
                    "--trainer.max_steps=4", "--model.optimizer.lr=3e-3")
    assert stage1.returncode == 0, stage1.stderr[-6000:]
    (ckpt,) = tmp_path.glob("runs/tiny_audio_pretrain/*/*/checkpoints/epoch=*-step=4.ckpt")
    exported = run_ovi_pl(tmp_path, "export", str(ckpt), str(tmp_path / "audio_tower.safetensors"), "--ema")
    assert exported.returncode == 0, exported.stderr[-3000:]
    tower = load_file(tmp_path / "audio_tower.safetensors")
    assert not any("_fusion." in k for k in tower) and torch.any(tower["head.proj.weight"] != 0)

    fit(tmp_path, f"--model.audio_init={tmp_path / 'audio_tower.safetensors'}", "--model.freeze_preset=fusion-fresh-video",
        "--trainer.max_steps=2")
    fused = ovi_to_ours(load_file(export_checkpoint(checkpoint(tmp_path, 2), tmp_path / "fused.safetensors")))
    for name in ("head.proj.weight", "blocks.1.ffn.0.weight", "patch_embedding.mlp.w2.weight"):
        assert torch.equal(fused[f"audio.{name}"], tower[name]), name  # frozen in stage 2, so still stage 1's


def test_validate_reproduces_the_validation_loss_logged_in_training(two_process_run):
    client = mlflow_client(two_process_run)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-tiny-fusion").experiment_id])
    logged = max(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step).value
    # Validation with another learning rate than training used: same weights, same loss; the run
    # keeps its first lr and records the new one as a tag.
    result = run_ovi_pl(two_process_run, "validate", "--config", str(ROOT / "configs/tiny_fusion.yaml"),
                    "--trainer.devices=2", "--data.num_samples=4", "--model.freeze_preset=fusion",
                    f"--ckpt_path={checkpoint(two_process_run, 8)}")
    assert result.returncode == 0, result.stderr[-6000:]
    revalidated = max(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.timestamp).value
    assert revalidated == pytest.approx(logged, rel=1e-6)
    run = client.get_run(run.info.run_id)
    assert run.data.params["optimizer/lr"] == "0.003"
    assert run.data.tags["changed_on_resume/optimizer/lr"] == "0.001"
    assert "config-validate.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
