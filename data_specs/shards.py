"""Reading WebDataset tar shards into samples, grouped the way WebDataset groups them."""
from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .members import split_member_name


@dataclass
class RawSample:
    """One sample as WebDataset would yield it: its members' bytes by extension."""

    shard: str
    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found while grouping, before any content check


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


def iter_shard_samples(path: str | Path, shard_problems: list[str] | None = None) -> Iterator[RawSample]:
    """Yield the samples of one tar shard in order, reading it as a stream (shards can be large).

    Problems that belong to no sample (a member name without an extension) are appended to
    `shard_problems`; a corrupt tar raises tarfile.TarError after the samples read so far.
    """
    notes = shard_problems if shard_problems is not None else []
    current: RawSample | None = None
    with tarfile.open(path, mode="r|*") as tar:
        for info in tar:
            if info.isdir():
                continue
            split = split_member_name(info.name)
            if split is None:
                notes.append(f"member {info.name!r} has no '.extension'; WebDataset skips it")
                continue
            key, ext = split
            if current is None or key != current.key:
                if current is not None:
                    yield current
                current = RawSample(shard=str(path), key=key)
            if not info.isfile():
                current.problems.append(f"member {info.name!r} is not a regular file (links are not allowed)")
            elif ext in current.members:
                current.problems.append(f"member .{ext} appears twice; WebDataset refuses duplicate members")
            else:
                stream = tar.extractfile(info)
                current.members[ext] = stream.read() if stream is not None else b""
    if current is not None:
        yield current
