"""The global batch order: a function of (seed, data epoch, batch size) and the sample index only,
never of the number of ranks or workers, so a position in it is one number that any world size
can continue from.

Each data epoch permutes every sample of the index with the seed and walks the permutation,
filling one open batch per bucket (samples batch only with samples of the same latent shape)
and closing it when full; the partial batches left at the end close the epoch, so every sample is
used once per epoch. The number of batches per epoch is the same for every epoch (the sum over
buckets of ceil(samples / batch_size)); data epochs follow one another in one numbering.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def epoch_batches(buckets: Sequence[Hashable], batch_size: int, seed: int, epoch: int,
                  shuffle: bool) -> list[list[int]]:
    """The batches (lists of index positions) of data epoch `epoch`, in global order."""
    order = np.random.default_rng((seed, epoch)).permutation(len(buckets)) if shuffle else range(len(buckets))
    open_batches: dict[Hashable, list[int]] = {}
    batches: list[list[int]] = []
    for i in order:
        bucket = buckets[i]
        batch = open_batches.setdefault(bucket, [])
        batch.append(int(i))
        if len(batch) == batch_size:
            batches.append(open_batches.pop(bucket))
    return batches + [open_batches[b] for b in sorted(open_batches)]  # type: ignore[type-var]


def batches_per_epoch(buckets: Sequence[Hashable], batch_size: int) -> int:
    sizes: dict[Hashable, int] = {}
    for bucket in buckets:
        sizes[bucket] = sizes.get(bucket, 0) + 1
    return sum(-(-n // batch_size) for n in sizes.values())


def batches_per_rank(total: int | None, start: int, world_size: int) -> int | None:
    """Batches each rank yields from global batch `start` to `total` (None: endless): the same on
    every rank, so collectives never wait on a rank that ran out; the last (total - start) %
    world_size batches of a finite stream are left out."""
    return None if total is None else max(0, (total - start) // world_size)
