"""Shards and completion markers: the only files a run writes that a rerun trusts.

Crash safety rests on three rules:
- a shard is written under a temporary name and renamed (os.replace) when complete, so a
  `shard-*.tar` is always whole; temporaries left by a killed run are deleted at start;
- an input's completion marker (`_state/done/<input_id>.json`, holding its records) is written
  only after every kept clip of that input sits in a renamed shard; inputs with a marker are
  skipped by the next run;
- clip keys are deterministic, and the next run indexes the keys already in shards, so a clip
  whose shard was renamed before its input's marker was written is not written again.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from data_specs.members import split_member_name
from data_specs.shards import add_sample

SHARD_RE = re.compile(r"^shard-(\d{6})\.tar$")
TMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class _OpenShard:
    index: int
    tmp_path: Path
    tar: tarfile.TarFile
    keys: list[str] = field(default_factory=list)
    bytes: int = 0


class ShardWriter:
    """Appends samples to `shard-NNNNNN.tar` files of at most `max_samples` samples / `max_bytes` bytes."""

    def __init__(self, shards_dir: Path, max_samples: int, max_bytes: int):
        self.dir = shards_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        for stale in self.dir.glob(f"{TMP_PREFIX}*"):
            stale.unlink()  # a shard the previous run did not finish; its inputs have no marker
        self.written: dict[str, str] = {}  # key -> shard file name, for every key already in a shard
        indices = [-1]
        for shard in sorted(self.dir.glob("shard-*.tar")):
            match = SHARD_RE.match(shard.name)
            if match:
                indices.append(int(match.group(1)))
                for key in _tar_keys(shard):
                    self.written[key] = shard.name
        self.next_index = max(indices) + 1
        self.current: _OpenShard | None = None

    def add(self, key: str, members: dict[str, bytes | Path]) -> list[tuple[str, list[str]]]:
        """Add one sample; return the shards this closed as (name, keys). A key already written is skipped."""
        if key in self.written or (self.current is not None and key in self.current.keys):
            return []
        if self.current is None:
            tmp = self.dir / f"{TMP_PREFIX}shard-{self.next_index:06d}.tar"
            self.current = _OpenShard(self.next_index, tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT))
            self.next_index += 1
        shard = self.current
        shard.bytes += add_sample(shard.tar, key, members, mtime=int(time.time()))
        shard.keys.append(key)
        if len(shard.keys) >= self.max_samples or shard.bytes >= self.max_bytes:
            return [self.close()]
        return []

    def close(self) -> tuple[str, list[str]]:
        """Finish the open shard and give it its final name; return (name, keys)."""
        shard = self.current
        assert shard is not None, "no open shard"
        shard.tar.close()
        with open(shard.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        name = f"shard-{shard.index:06d}.tar"
        os.replace(shard.tmp_path, self.dir / name)
        self.current = None
        for key in shard.keys:
            self.written[key] = name
        return name, shard.keys

    def finish(self) -> list[tuple[str, list[str]]]:
        return [self.close()] if self.current is not None and self.current.keys else []

    def pending_keys(self) -> set[str]:
        return set(self.current.keys) if self.current else set()


def _tar_keys(path: Path) -> set[str]:
    with tarfile.open(path, "r") as tar:
        return {split[0] for name in tar.getnames() if (split := split_member_name(name)) is not None}


class Markers:
    """Completion markers: one json per finished input, holding that input's records."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir / "done"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, input_id: str) -> Path:
        return self.dir / f"{input_id}.json"

    def done_ids(self) -> set[str]:
        return {p.stem for p in self.dir.glob("*.json")}

    def write(self, input_id: str, uri: str, records: list[dict[str, Any]]) -> None:
        payload = {"input_id": input_id, "uri": uri, "records": records}
        atomic_write_bytes(self.path(input_id), json.dumps(payload, sort_keys=True, default=str).encode())

    def records(self) -> Iterator[dict[str, Any]]:
        """Every finished input's records, one marker file in memory at a time."""
        for path in sorted(self.dir.glob("*.json")):
            yield from json.loads(path.read_text())["records"]
