"""A Lightning run over ShardDataModule for test_datamodule's resume tests: real Trainer, DDP on
CPU (gloo), real checkpoints. Every rank appends `{"step", "loss", "keys"}` per training step to
<out>/rank<r>.jsonl, so a test can compare what a killed-and-resumed run saw with an uninterrupted one.

    python tests/shard_resume_fit.py SHARDS OUT --devices 2 --max_steps 8 [--kill_at 7] [--ckpt_path C]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ovi_pl.data import ShardDataModule  # noqa: E402


class LatentRegression(L.LightningModule):
    """Predicts a sample's mean audio latent from its mean video latent: each step's loss depends on
    the samples of that step and on every update before it."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(48, 1)
        self.out = out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred = self.proj(batch["video_latents"].mean(dim=(2, 3, 4))).squeeze(-1)
        loss = (pred - batch["audio_latents"].mean(dim=(1, 2))).square().mean()
        with open(self.out / f"rank{self.global_rank}.jsonl", "a") as f:
            f.write(json.dumps({"step": self.global_step, "loss": loss.item(), "keys": batch["keys"]}) + "\n")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


class KillAt(L.Callback):
    """SIGKILLs the whole run (every rank and loader worker) as step `step` starts: a crash with no
    chance to save anything."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def fit(shards: str, out: Path, devices: int = 2, workers: int = 2, max_steps: int = 8, kill_at: int | None = None,
        ckpt_path: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    data = ShardDataModule(shards, mode="latent", batch_size=2, num_workers=workers, seed=1,
                           text_member="text_d32.npy", text_len=16, return_keys=True)
    callbacks: list[L.Callback] = [L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out / "checkpoints", every_n_train_steps=2, save_top_k=-1, filename="{step}")]
    if kill_at is not None:
        callbacks.append(KillAt(kill_at))
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=max_steps, callbacks=callbacks, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out)
    trainer.fit(LatentRegression(out), datamodule=data, ckpt_path=ckpt_path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shards")
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=8)
    parser.add_argument("--kill_at", type=int)
    parser.add_argument("--ckpt_path")
    fit(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
