"""Shards and completion markers: the only files a run writes that a rerun trusts.

Who writes what: the driver decides which samples go into which shard (`ShardPlanner`, names and
sizes only) and writes the markers; a Ray worker writes each shard (`write_shard`), reading the
transcoded clips from `output.dir/_work/clips` on the shared file system. No clip byte passes
through the driver.

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
import socket
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


@dataclass(frozen=True)
class ShardSample:
    """One sample as the driver hands it to a shard writer: its json text and the work files to pack."""

    key: str
    json: str
    files: dict[str, str]  # extension -> path of a transcoded file under _work/clips

    def members(self) -> dict[str, bytes | Path]:
        return {"json": self.json.encode(), **{ext: Path(p) for ext, p in self.files.items()}}


@dataclass(frozen=True)
class ShardSpec:
    """A shard to write: its final name and its samples, in order."""

    name: str
    samples: tuple[ShardSample, ...]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.samples]


@dataclass(frozen=True)
class WrittenShard:
    """What a shard writer reports back: the shard, its keys, and where it was written (for the run log)."""

    name: str
    keys: list[str]
    host: str
    pid: int


def write_shard(shards_dir: str, spec: ShardSpec) -> WrittenShard:
    """Write `spec` as `shards_dir/spec.name` (runs on a Ray worker), then delete the work files it packed.

    Safe to run again after a crash part-way (Ray retries a task whose worker died): a shard already in
    place with exactly these keys is whole and is not rewritten (its work files may be gone by then),
    and a half-written temporary is left for the next run's start-up cleanup. A shard of that name with
    other keys is never overwritten: it can only come from a killed run whose write finished late.
    """
    final = Path(shards_dir) / spec.name
    if final.exists():
        if _tar_keys(final) != set(spec.keys):
            raise FileExistsError(f"{final} exists with other samples: a killed run's shard write finished after "
                                  "this run started; stop every process of the killed run and start again")
    else:
        tmp = final.with_name(f"{TMP_PREFIX}{spec.name}.{os.getpid()}")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in spec.samples:
                add_sample(tar, sample.key, sample.members(), mtime=int(time.time()))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    for sample in spec.samples:
        for path in sample.files.values():
            Path(path).unlink(missing_ok=True)
    return WrittenShard(spec.name, spec.keys, socket.gethostname(), os.getpid())


@dataclass
class _OpenShard:
    index: int
    samples: list[ShardSample] = field(default_factory=list)
    bytes: int = 0
    opened_at: float = field(default_factory=time.monotonic)


class ShardPlanner:
    """Driver side: groups samples into `shard-NNNNNN.tar` specs of at most `max_samples` samples /
    `max_bytes` bytes (sizes from the file system's metadata; the files are not read here)."""

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
        self.planned: set[str] = set()  # keys in the open shard or in a shard being written

    def add(self, sample: ShardSample) -> list[ShardSpec]:
        """Add one sample; return the shard this filled, if any. A key already planned or written is skipped."""
        if sample.key in self.written or sample.key in self.planned:
            return []
        if self.current is None:
            self.current = _OpenShard(self.next_index)
            self.next_index += 1
        shard = self.current
        shard.samples.append(sample)
        shard.bytes += len(sample.json.encode()) + sum(os.path.getsize(p) for p in sample.files.values())
        self.planned.add(sample.key)
        if len(shard.samples) >= self.max_samples or shard.bytes >= self.max_bytes:
            return [self.close()]
        return []

    def close(self) -> ShardSpec:
        """The open shard as a spec to write; the next sample opens a new one."""
        assert self.current is not None, "no open shard"
        spec = ShardSpec(f"shard-{self.current.index:06d}.tar", tuple(self.current.samples))
        self.current = None
        return spec

    def flush(self) -> list[ShardSpec]:
        """The open shard, if it holds anything."""
        return [self.close()] if self.current is not None and self.current.samples else []

    def open_for(self) -> float:
        """Seconds since the open shard got its first sample (0 with none open)."""
        return time.monotonic() - self.current.opened_at if self.current is not None else 0.0

    def written_as(self, shard: WrittenShard) -> None:
        for key in shard.keys:
            self.planned.discard(key)
            self.written[key] = shard.name


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
