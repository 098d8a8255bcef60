"""The batch stream of one data-parallel rank over the global batch order (order.py).

From a start position `start` (global batches consumed before, by any number of ranks), rank r's
j-th batch is global batch start + j * world_size + r, and DataLoader worker w yields the rank's
batches j = w, w + num_workers, ... (DataLoader takes them round-robin, so they arrive in order).
The data position is therefore one number that any world size and worker count continues from,
and a resumed stream reads only the samples it yields.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .collate import collate
from .index import SampleIndex
from .order import batches_per_epoch, batches_per_rank, epoch_batches
from .samples import SampleConfig, materialise

log = logging.getLogger(__name__)
SKIPPED_KEY = "skipped_samples"


class ShardBatchStream(IterableDataset):
    """Batches (dicts, see collate.collate) for one rank; give DataLoader batch_size=None.

    epochs: data epochs in the stream, None for endless. limit: batches per rank at most.
    Every rank yields the same number of batches (see order.batches_per_rank).
    """

    def __init__(
        self,
        index: SampleIndex,
        sample_config: SampleConfig,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        epochs: int | None = None,
        start: int = 0,
        limit: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.index = index
        self.cfg = sample_config
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.start = start
        self.per_epoch = batches_per_epoch(index.buckets(), batch_size)
        self.total_batches = None if epochs is None else epochs * self.per_epoch
        count = batches_per_rank(self.total_batches, start, world_size)
        self.batches_per_rank = limit if count is None else count if limit is None else min(count, limit)
        self._buckets = index.buckets()
        self._epoch: tuple[int, list[list[int]]] | None = None

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        num_workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        stop = sys.maxsize if self.batches_per_rank is None else self.batches_per_rank
        previous: dict[str, Any] | None = None
        problems: list[str] = []
        for j in range(worker_id, stop, num_workers):
            batch = self._load(self.global_batch(j), problems)
            if batch is None:
                # Every sample failed. Something must still be yielded, or this rank would run fewer
                # steps than the others: this worker's previous batch again, else its next loadable one.
                batch = previous or self._next_loadable(j, num_workers, stop)
            for problem in problems:
                log.warning(problem)
            yield {**batch, SKIPPED_KEY: torch.tensor(len(problems), dtype=torch.int64)}
            previous, problems = batch, []

    def global_batch(self, j: int) -> int:
        """The global batch that is this rank's j-th."""
        return self.start + j * self.world_size + self.rank

    def _load(self, g: int, problems: list[str]) -> dict[str, Any] | None:
        """Global batch g, collated; None if none of its samples loads. Problems are appended,
        those found while indexing with the first batch of each epoch (counted once an epoch)."""
        epoch, i = divmod(g, self.per_epoch)
        if i == 0:
            problems += self.index.problems
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = epoch, epoch_batches(self._buckets, self.batch_size, self.seed, epoch, self.shuffle)
        samples = []
        for position in self._epoch[1][i]:
            planned = self.index.samples[position]
            try:
                samples.append(materialise(planned, self.cfg))
            except Exception as exc:  # noqa: BLE001 - a bad sample must never stop training
                problems.append(f"skipping sample {planned.key!r} of shard {planned.tar.shard}: "
                                f"{type(exc).__name__}: {exc}")
        return collate(samples) if samples else None

    def _next_loadable(self, j: int, num_workers: int, stop: int) -> dict[str, Any]:
        # Its problems are counted when its own turn comes.
        for later in range(j + num_workers, min(stop, j + num_workers * (self.per_epoch + 1)), num_workers):
            batch = self._load(self.global_batch(later), [])
            if batch is not None:
                return batch
        raise RuntimeError(f"no batch of rank {self.rank} from global batch {self.global_batch(j)} on loads; "
                           "the shards' samples are corrupt (see the warnings above)")
