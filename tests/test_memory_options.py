"""Memory options as config switches: FSDP2 CPU offload (`model.parallel.cpu_offload`) and torchao's
8-bit AdamW (`model.optimizer.name: adamw8bit`), each trained, checkpointed and resumed on CPU."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.distributed.fsdp import CPUOffloadPolicy

from ovi_pl.models.ovi import OviFusionModel, get_model_config, save_ovi_checkpoint
from ovi_pl.training.memory import MemoryOptions, count_parameters, measured_state_bytes, state_bytes
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ParallelConfig, ValidationConfig
from ovi_pl.training.strategy import FSDP2Strategy
from ovi_pl.training.synthetic_data import SyntheticLatentDataModule

from conftest import randomize_


class RecordLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    initial = randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=5)
    return str(save_ovi_checkpoint(initial, tmp_path_factory.mktemp("init") / "init.safetensors"))


def fit(root, init, steps, parallel, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1), resume=None, strategy=None,
        validate=False, save=True):
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="fusion", init_checkpoint=init,
                            optimizer=optimizer, parallel=parallel, validation=ValidationConfig(noise_levels=2),
                            ema_decay=0.9)
    losses = RecordLosses()
    saver = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=steps)  # the last step only
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=strategy or FSDP2Strategy(), precision="32-true",
                        max_steps=steps, limit_val_batches=1, num_sanity_val_steps=0, val_check_interval=1000,
                        logger=False, callbacks=[losses, saver] if save else [losses],
                        enable_checkpointing=save, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)
    # num_samples = batch size: every step sees the same batch, so the loss must fall.
    data = SyntheticLatentDataModule(num_samples=2, batch_size=2)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]["val/loss"] if validate else None
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    return module, trainer, losses.losses, before


def parallel(**kwargs) -> ParallelConfig:
    return ParallelConfig(compute_dtype="float32", activation_checkpointing=False, frozen_dtype="bfloat16", **kwargs)


def test_cpu_offload_trains_like_no_offload_and_resumes_from_its_checkpoint(tmp_path, init_checkpoint):
    plain, _, plain_losses, _ = fit(tmp_path / "plain", init_checkpoint, 3, parallel(), save=False)
    first, _, first_losses, _ = fit(tmp_path / "offload", init_checkpoint, 2, parallel(cpu_offload=True))
    # The policy reached every FSDP2 unit, and the shards (bf16 frozen, fp32 trainable) sit in host memory.
    state = first.model._get_fsdp_state()
    assert isinstance(state._fsdp_param_group.offload_policy, CPUOffloadPolicy)
    assert {p.dtype for p in first.model.parameters()} == {torch.float32, torch.bfloat16}
    resumed, _, resumed_losses, _ = fit(tmp_path / "offload", init_checkpoint, 3, parallel(cpu_offload=True), save=False,
                                        resume=str(tmp_path / "offload" / "checkpoints" / "epoch=0-step=2.ckpt"))
    assert len(first_losses + resumed_losses) == 3
    torch.testing.assert_close(first_losses + resumed_losses, plain_losses, rtol=1e-5, atol=0)
    trained = {k: v.full_tensor() for k, v in plain.model.state_dict().items()}
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value.full_tensor(), trained[name], rtol=1e-5, atol=1e-7, msg=name)


def test_cpu_offload_without_fsdp2_fails_before_work_naming_the_key(tmp_path, init_checkpoint):
    with pytest.raises(ValueError, match="model.parallel.cpu_offload.*FSDP2Strategy"):
        fit(tmp_path, init_checkpoint, 1, parallel(cpu_offload=True), strategy="auto")


def test_adamw8bit_lowers_the_loss_and_its_smaller_state_resumes_from_a_checkpoint(tmp_path, init_checkpoint,
                                                                                    monkeypatch):
    pytest.importorskip("torchao", reason="model.optimizer.name=adamw8bit needs torchao (pip install -e '.[dev]')")
    from torchao.optim import AdamW8bit

    # torchao compiles its step once per parameter shape (about 30 s on 2 CPU cores); eager runs the same ops.
    monkeypatch.setattr(torch, "compile", lambda step, **options: step)
    eight_bit = OptimizerConfig(name="adamw8bit", lr=3e-3, warmup_steps=1)
    module, trainer, _, before = fit(tmp_path / "run", init_checkpoint, 6, parallel(), eight_bit, validate=True)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, AdamW8bit)
    after = trainer.validate(module, datamodule=SyntheticLatentDataModule(num_samples=2, batch_size=2),
                             verbose=False)[0]["val/loss"]
    assert after < 0.9 * before
    # State bytes as held (8-bit codes and per-block scales), against AdamW's two fp32 moments.
    adamw = state_bytes(count_parameters(module.model), MemoryOptions(frozen_bytes=2), ema=True)["optimizer"]
    held = measured_state_bytes(module.model, optimizer, module.ema)["optimizer"]
    assert held < 0.4 * adamw
    # Resuming at the last checkpoint restores the 8-bit moments exactly.
    _, restored, _, _ = fit(tmp_path / "run", init_checkpoint, 6, parallel(), eight_bit, save=False,
                            resume=str(tmp_path / "run" / "checkpoints" / "epoch=0-step=6.ckpt"))
    saved, loaded = optimizer.state_dict()["state"], restored.optimizers[0].state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for index, moments in saved.items():
        for key in ("exp_avg", "exp_avg_sq"):
            expected, got = (_dequantized(s[index][key]) for s in (saved, loaded))
            assert torch.equal(expected, got), (index, key)


def _dequantized(tensor: torch.Tensor) -> torch.Tensor:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.dequantize() if hasattr(local, "dequantize") else local


def test_adamw8bit_without_torchao_names_the_key_and_the_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "torchao" else object())
    with pytest.raises(ValueError, match=r"model.optimizer.name='adamw8bit' needs torchao: pip install"):
        OptimizerConfig(name="adamw8bit")
    with pytest.raises(ValueError, match=r"model.optimizer.name='sgd' must be one of \['adamw', 'adamw8bit'\]"):
        OptimizerConfig(name="sgd")
