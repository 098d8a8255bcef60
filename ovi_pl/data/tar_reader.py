"""Reading the samples of one shard, grouped the WebDataset way (adjacent members sharing a key).

From local files only the small `.json` member is read while the shard is scanned; the other
members are recorded as (offset, size) and read when the sample is actually used. Samples wait
in a shuffle buffer and, after a resume, most of them are skipped, so this keeps both memory and
the cost of fast-forwarding small. Streams that cannot seek (`pipe:`, object stores) are read whole.
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from data_specs import split_member_name

from .urls import is_local, local_path, open_shard

# Read at scan time: needed to bucket and filter the sample before it is used.
EAGER_EXTENSIONS = frozenset({"json"})


@dataclass(frozen=True)
class MemberRef:
    """Where a member's bytes lie in a local shard."""

    path: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise EOFError(f"{self.path}: member at byte {self.offset} is truncated")
        return data


@dataclass
class TarSample:
    shard: str
    key: str
    members: dict[str, bytes | MemberRef] = field(default_factory=dict)

    def read(self, ext: str) -> bytes:
        value = self.members[ext]
        return value.read() if isinstance(value, MemberRef) else value


def iter_tar_samples(url: str) -> Iterator[TarSample]:
    """Samples of the shard at `url` in tar order. Raises tarfile.TarError / OSError on a corrupt
    or unreadable shard, after yielding the samples before the damage."""
    lazy = is_local(url)
    path = local_path(url)
    current: TarSample | None = None
    with open_shard(url) as stream:
        # "r:" (seekable) lets tarfile skip member data; "r|" reads a non-seekable stream in order.
        with tarfile.open(fileobj=stream, mode="r:" if lazy else "r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                split = split_member_name(info.name)
                if split is None:
                    continue  # WebDataset ignores names without an extension too
                key, ext = split
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                    current = TarSample(shard=url, key=key)
                if lazy and ext not in EAGER_EXTENSIONS:
                    current.members[ext] = MemberRef(path, info.offset_data, info.size)
                else:
                    handle = tar.extractfile(info)
                    current.members[ext] = handle.read() if handle is not None else b""
    if current is not None:
        yield current
