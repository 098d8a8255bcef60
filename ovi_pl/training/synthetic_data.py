"""Random latents at a model's geometry, for smoke tests and the tiny demo.

Samples are a pure function of (seed, index), streamed in a global order that every rank
strides through, so the data position is one number (samples consumed) that resumes exactly,
even on a different number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

Sample = dict[str, torch.Tensor]


class SyntheticLatents(IterableDataset):
    def __init__(
        self,
        num_samples: int,
        video_shape: tuple[int, int, int, int] | None,
        audio_length: int,
        audio_channels: int,
        text_tokens: int,
        text_dim: int,
        seed: int,
        start: int,
        rank: int,
        world_size: int,
        limit: int | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.video_shape = video_shape
        self.audio_length = audio_length
        self.audio_channels = audio_channels
        self.text_tokens = text_tokens
        self.text_dim = text_dim
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self.limit = limit  # global samples to stream before stopping; None streams forever

    def sample(self, index: int) -> Sample:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + index)
        # Audio lengths vary so that padding and key masks are exercised.
        length = int(torch.randint(self.audio_length // 2, self.audio_length + 1, (1,), generator=gen))
        audio = torch.randn(self.audio_length, self.audio_channels, generator=gen)
        audio[length:] = 0
        text = torch.randn(self.text_tokens, self.text_dim, generator=gen)
        sample = {"audio_latents": audio, "audio_length": torch.tensor(length), "text_embedding": text}
        if self.video_shape is not None:
            sample["video_latents"] = torch.randn(self.video_shape, generator=gen)
        return sample

    def __iter__(self) -> Iterator[Sample]:
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            raise ValueError("SyntheticLatents streams in one worker; set num_workers to 0 or 1")
        position = self.start + self.rank
        while self.limit is None or position < self.start + self.limit:
            epoch, offset = divmod(position, self.num_samples)
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
            yield self.sample(int(order[offset]))
            position += self.world_size


class SyntheticLatentDataModule(L.LightningDataModule):
    """An endless stream of random latents; train with `max_steps`.

    num_samples: distinct samples before the order repeats (set it to batch_size x ranks to
    train on one fixed batch). video_shape: latent [C, F, H, W], or None for audio-only batches.
    """

    def __init__(
        self,
        num_samples: int = 64,
        batch_size: int = 2,
        video_shape: tuple[int, int, int, int] | None = (48, 3, 4, 6),
        audio_length: int = 13,
        audio_channels: int = 20,
        text_tokens: int = 16,
        text_dim: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.video_shape = video_shape
        self.audio_length = audio_length
        self.audio_channels = audio_channels
        self.text_tokens = text_tokens
        self.text_dim = text_dim
        self.seed = seed
        self.samples_consumed = 0  # across all ranks, restored on resume

    def _rank_world(self) -> tuple[int, int]:
        # Data-parallel rank and size: the ranks of a context-parallel group read the same samples.
        sampler = self.trainer.distributed_sampler_kwargs if self.trainer else None
        return (sampler["rank"], sampler["num_replicas"]) if sampler else (0, 1)

    def _dataset(self, seed: int, start: int, limit: int | None = None) -> SyntheticLatents:
        rank, world = self._rank_world()
        return SyntheticLatents(
            self.num_samples, self.video_shape, self.audio_length, self.audio_channels,
            self.text_tokens, self.text_dim, seed, start, rank, world, limit,
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.seed, self.samples_consumed), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        # A fixed held-out set: a different seed, always from its start, each sample seen once.
        dataset = self._dataset(self.seed + 7919, 0, limit=self.num_samples)
        return DataLoader(dataset, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def state_dict(self) -> dict[str, int]:
        world = self._rank_world()[1]
        # `processed`, not `completed`: checkpoints are written from the end-of-batch hooks, before
        # the current batch counts as completed.
        done = self.trainer.fit_loop.epoch_loop.batch_progress.total.processed if self.trainer else 0
        return {"samples_consumed": done * self.batch_size * world}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.samples_consumed = int(state["samples_consumed"])
