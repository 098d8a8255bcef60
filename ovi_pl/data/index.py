"""The sample index of a shard set: every sample a run can use, planned from its json (kind,
bucket, where its members lie), built once when the loader starts.

The index is what makes the data order independent of the number of ranks and workers: the
order is a seeded permutation of its entries (order.py), and any rank can read any sample by
seeking to its members. Only tar headers and the small `.json` members are read to build it.
Shards that are not local files (`pipe:`, http, object stores) are copied into a local cache
first, so that they can be read the same way.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass, field

from .samples import BadSampleError, NotForThisRun, PlannedSample, SampleConfig, plan_sample
from .tar_reader import iter_tar_samples
from .urls import cached_local_copy, is_local


@dataclass
class SampleIndex:
    samples: list[PlannedSample]
    problems: list[str] = field(default_factory=list)  # samples passed over while indexing, with why

    def buckets(self) -> list[tuple[int, ...]]:
        return [s.bucket for s in self.samples]


def build_index(urls: list[str], cfg: SampleConfig, cache_dir: str) -> SampleIndex:
    """Plan every sample of `urls` in shard order. Bad samples and unreadable shards are recorded
    in `problems`, not raised: a bad sample must never stop training. Raises ValueError when no
    sample is usable, naming the shards."""
    index = SampleIndex([])
    for url in urls:
        try:
            shard = url if is_local(url) else cached_local_copy(url, cache_dir)
            for raw in iter_tar_samples(shard):
                try:
                    index.samples.append(plan_sample(raw, cfg))
                except NotForThisRun:
                    continue
                except BadSampleError as exc:
                    index.problems.append(f"skipping sample {raw.key!r} of shard {url}: {exc}")
        except (tarfile.TarError, OSError, EOFError) as exc:
            index.problems.append(f"skipping the rest of shard {url}: cannot read it ({type(exc).__name__}: {exc})")
    if not index.samples:
        shown = ", ".join(urls[:3]) + (", ..." if len(urls) > 3 else "")
        raise ValueError(f"shards {shown} hold no samples usable in {cfg.mode} mode with modality {cfg.modality}"
                         + (f" ({index.problems[0]})" if index.problems else ""))
    return index
