"""The batch stream of one data-parallel rank: a deterministic function of
(seed, data epoch, rank, world size, dataloader worker), so a position is one number.

Each data epoch permutes the shards with the seed and deals them out to the world_size x
num_workers streams (disjoint; together every shard). A stream reads its shards in order through a
shuffle buffer into per-bucket batches; a bucket's last, partial batch is emitted at the end of the
epoch, so every sample is used exactly once per epoch. DataLoader workers are served round-robin,
so global batch g of a rank comes from stream g % num_workers; a rank that has consumed N batches
resumes by having each stream skip the batches it produced among those N. Skipped batches are
only planned (tar headers and json read), never decoded.
"""
from __future__ import annotations

import logging
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .collate import collate
from .samples import BadSampleError, NotForThisRun, PlannedSample, SampleConfig, materialise, plan_sample
from .tar_reader import iter_tar_samples

log = logging.getLogger(__name__)
SKIPPED_KEY = "skipped_samples"


@dataclass
class _Plan:
    """A batch as planned from json alone, with the problems found since the previous one."""

    samples: list[PlannedSample]
    problems: list[str] = field(default_factory=list)


def batches_of_stream(stream: int, consumed: int, num_workers: int) -> int:
    """How many of a rank's first `consumed` batches came from `stream` (round-robin over workers)."""
    return max(0, (consumed - stream + num_workers - 1) // num_workers)


def shard_order(urls: list[str], seed: int, epoch: int, shuffle: bool) -> list[str]:
    order = list(urls)
    if shuffle:
        random.Random(f"shards:{seed}:{epoch}").shuffle(order)
    return order


class ShardBatchStream(IterableDataset):
    """Batches (dicts, see collate.collate) for one rank; give DataLoader batch_size=None."""

    def __init__(
        self,
        urls: list[str],
        sample_config: SampleConfig,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        epochs: int | None = None,
        consumed_batches: int = 0,
        limit: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.urls = list(urls)
        self.cfg = sample_config
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.epochs = epochs  # None: endless, one data epoch after another
        self.consumed_batches = consumed_batches
        self.limit = limit  # batches to yield per worker before stopping

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        num_workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        num_streams = self.world_size * num_workers
        if len(self.urls) < num_streams:
            raise ValueError(f"{len(self.urls)} shards cannot feed {self.world_size} ranks x {num_workers} "
                             f"dataloader workers = {num_streams} streams; write more, smaller shards or use "
                             "fewer workers")
        # After a resume this loader worker continues the stream that was next in the round-robin.
        stream = (worker_id + self.consumed_batches) % num_workers
        skip = batches_of_stream(stream, self.consumed_batches, num_workers)
        yielded = 0
        problems: list[str] = []
        for index, plan in enumerate(self.plan(self.rank * num_workers + stream, num_streams)):
            if index < skip:
                continue  # consumed before the checkpoint, problems included (they were counted then)
            problems += plan.problems
            samples = []
            for planned in plan.samples:
                try:
                    samples.append(materialise(planned, self.cfg))
                except Exception as exc:  # noqa: BLE001 - a bad sample must never stop training
                    problems.append(f"skipping sample {planned.key!r} of shard {planned.tar.shard}: "
                                    f"{type(exc).__name__}: {exc}")
            if not samples:
                continue  # every sample failed: its problems go with the next batch
            for problem in problems:
                log.warning(problem)
            batch = collate(samples)
            batch[SKIPPED_KEY] = torch.tensor(len(problems), dtype=torch.int64)
            problems = []
            yield batch
            yielded += 1
            if self.limit is not None and yielded >= self.limit:
                return
        for problem in problems:  # the stream ended with no batch left to count them in
            log.warning(problem)

    def plan(self, stream: int, num_streams: int) -> Iterator[_Plan]:
        """The planned batches of global stream `stream` (rank * num_workers + worker), epoch after epoch.

        Every plan holds samples: problems found after the last one of an epoch ride with the next
        epoch's first, so plan indices and yielded batches stay one to one.
        """
        problems: list[str] = []
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            shards = shard_order(self.urls, self.seed, epoch, self.shuffle)[stream::num_streams]
            rng = random.Random(f"samples:{self.seed}:{epoch}:{stream}")
            found = 0
            for plan in self._plan_epoch(shards, rng, problems):
                found += len(plan.samples)
                yield plan
            if not found and self.epochs is None:
                raise RuntimeError(f"shards {shards} hold no usable samples for this run; an endless stream "
                                   "over them would never yield a batch")
            epoch += 1
        for problem in problems:  # a finite stream's last words; no batch is left to count them
            log.warning(problem)

    def _plan_epoch(self, shards: list[str], rng: random.Random, problems: list[str]) -> Iterator[_Plan]:
        buffer: list[PlannedSample] = []
        buckets: dict[tuple[int, ...], list[PlannedSample]] = {}

        def emit(samples: list[PlannedSample]) -> _Plan:
            plan = _Plan(samples, problems.copy())
            problems.clear()
            return plan

        def add(sample: PlannedSample) -> Iterator[_Plan]:
            bucket = buckets.setdefault(sample.bucket, [])
            bucket.append(sample)
            if len(bucket) == self.batch_size:
                del buckets[sample.bucket]
                yield emit(bucket)

        for sample in self._planned_samples(shards, problems):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            if buffer:
                i = rng.randrange(len(buffer))
                sample, buffer[i] = buffer[i], sample
            yield from add(sample)
        rng.shuffle(buffer)
        for sample in buffer:
            yield from add(sample)
        for key in sorted(buckets):  # partial batches: the epoch uses every sample once
            yield emit(buckets[key])

    def _planned_samples(self, shards: list[str], problems: list[str]) -> Iterator[PlannedSample]:
        for shard in shards:
            try:
                for raw in iter_tar_samples(shard):
                    try:
                        yield plan_sample(raw, self.cfg)
                    except NotForThisRun:
                        continue
                    except BadSampleError as exc:
                        problems.append(f"skipping sample {raw.key!r} of shard {shard}: {exc}")
            except (tarfile.TarError, OSError, EOFError) as exc:
                problems.append(f"skipping the rest of shard {shard}: cannot read it ({type(exc).__name__}: {exc})")
