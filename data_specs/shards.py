"""WebDataset tar shards: finding them, grouping their members into samples the way WebDataset does,
and writing a sample. The one implementation of each, for the validator, training's loader and
curation's writers."""
from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .members import split_member_name


@dataclass(frozen=True)
class MemberRef:
    """Where a member's bytes lie in a local, uncompressed shard: read when the sample is used."""

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
class RawSample:
    """One sample as WebDataset would yield it: its members by extension, as bytes or, when the shard is
    read lazily, as a MemberRef (`read` gives the bytes either way)."""

    shard: str
    key: str
    members: dict[str, bytes | MemberRef] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found while grouping, before any content check

    def read(self, ext: str) -> bytes:
        value = self.members[ext]
        return value.read() if isinstance(value, MemberRef) else value


def find_shards(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to the `.tar` files under them (sorted); files are taken as given.

    Raises FileNotFoundError for a path that does not exist and ValueError when nothing is found.
    """
    shards: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            shards += sorted(p for p in path.rglob("*.tar") if p.is_file())
        elif path.is_file():
            shards.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such shard file or directory")
    if not shards:
        raise ValueError(f"no .tar shards found in {', '.join(map(str, paths))}")
    return shards


def group_samples(tar: tarfile.TarFile, shard: str, *, lazy_path: str | None = None,
                  eager: Collection[str] = (), shard_problems: list[str] | None = None) -> Iterator[RawSample]:
    """The samples of an open tar in order: adjacent members whose names share a key (split_member_name)
    form one sample, WebDataset's rule.

    lazy_path: the shard's local file, with `tar` opened on it seekably ("r:"): members are then not
    read but recorded as MemberRef, except those whose extension is in `eager`. Without it every member
    is read (streams, "r|").

    Problems that belong to no sample (a member name without an extension) are appended to
    `shard_problems`; those of a sample (a link, a repeated extension: WebDataset refuses both) to its
    `problems`, the first of a repeated member being kept. A corrupt tar raises tarfile.TarError after
    the samples read so far.
    """
    current: RawSample | None = None
    for info in tar:
        if info.isdir():
            continue
        split = split_member_name(info.name)
        if split is None:
            if shard_problems is not None:
                shard_problems.append(f"member {info.name!r} has no '.extension'; WebDataset skips it")
            continue
        key, ext = split
        if current is None or key != current.key:
            if current is not None:
                yield current
            current = RawSample(shard=shard, key=key)
        if not info.isfile():
            current.problems.append(f"member {info.name!r} is not a regular file (links are not allowed)")
        elif ext in current.members:
            current.problems.append(f"member .{ext} appears twice; WebDataset refuses duplicate members")
        elif lazy_path is not None and ext not in eager:
            current.members[ext] = MemberRef(lazy_path, info.offset_data, info.size)
        else:
            handle = tar.extractfile(info)
            current.members[ext] = handle.read() if handle is not None else b""
    if current is not None:
        yield current


def iter_shard_samples(path: str | Path, shard_problems: list[str] | None = None) -> Iterator[RawSample]:
    """Yield the samples of one tar shard in order, every member read, reading the file as a stream
    (shards can be large; compressed ones are read too). See `group_samples` for the problems noted."""
    with tarfile.open(path, mode="r|*") as tar:
        yield from group_samples(tar, str(path), shard_problems=shard_problems)


def add_sample(tar: tarfile.TarFile, key: str, members: Mapping[str, bytes | Path], mtime: int = 0) -> int:
    """Append one sample to a tar open for writing: members named `key.ext`, the json first and the rest
    by extension, so the same sample gives the same bytes. A Path member is copied from its file.
    Returns the payload bytes written."""
    written = 0
    for ext in sorted(members, key=lambda e: (e != "json", e)):
        payload = members[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.mtime, info.mode = mtime, 0o644
        if isinstance(payload, (bytes, bytearray)):
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        else:
            with open(payload, "rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                tar.addfile(info, f)
        written += info.size
    return written
