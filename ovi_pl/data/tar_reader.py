"""Reading the samples of one shard, grouped the WebDataset way (data_specs.shards.group_samples).

From local files only the small `.json` member is read while the shard is scanned; the other
members are recorded as (offset, size) and read when the sample is actually used, so the sample
index (index.py) stays small and any sample can be read on its own. Streams that cannot seek
(`pipe:`, object stores) are read whole.
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator

from data_specs.shards import MemberRef, RawSample, group_samples

from .urls import is_local, local_path, open_shard

__all__ = ["EAGER_EXTENSIONS", "MemberRef", "TarSample", "iter_tar_samples"]

# Read at scan time: needed to bucket and filter the sample before it is used.
EAGER_EXTENSIONS = frozenset({"json"})

# A shard sample as the loader handles it (members as bytes or MemberRef; `read(ext)` gives bytes).
TarSample = RawSample


def iter_tar_samples(url: str) -> Iterator[TarSample]:
    """Samples of the shard at `url` in tar order. Raises tarfile.TarError / OSError on a corrupt
    or unreadable shard, after yielding the samples before the damage."""
    lazy = is_local(url)
    with open_shard(url) as stream:
        # "r:" (seekable, uncompressed) lets tarfile skip member data; "r|*" reads a stream in order.
        with tarfile.open(fileobj=stream, mode="r:" if lazy else "r|*") as tar:
            yield from group_samples(tar, url, lazy_path=local_path(url) if lazy else None, eager=EAGER_EXTENSIONS)
