"""Driver side of a run: rows that left the pipeline become shard plans, records and completion markers.

The collector does no I/O on clip bytes and starts no Ray work: `add` returns the shards a row
filled (`ShardSpec`s, for the caller to have written on a worker), and `shard_written` tells it a
shard is in place, which may complete inputs and commit their markers. That keeps the resume
bookkeeping a plain state machine, readable (and testable) without a cluster.

An input goes through two steps:
- *finished*: every row it will produce has arrived (its clips, or its one input row, and the audio
  segments announced on them). It is logged, and its downloaded copy (a URL input) is deleted: no
  stage will read the source again.
- *committed*: in addition, every kept sample of it sits in a renamed shard. Its marker is written.
"""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import CurationConfig
from .keys import source_prefix
from .report import make_record
from .stage import KEPT, QUARANTINED, Row
from .writer import Markers, ShardPlanner, ShardSample, ShardSpec, WrittenShard

log = logging.getLogger("curation")

# Rows written to shards: clips (audio_video) and audio-only segments of their sources.
_SAMPLE_TYPES = ("clip", "audio_clip")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def state(self) -> Path:
        return self.root / "_state"

    @property
    def work(self) -> Path:
        return self.root / "_work"

    @property
    def clips(self) -> Path:
        return self.work / "clips"

    @property
    def downloads(self) -> Path:
        return self.work / "downloads"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def log(self) -> Path:
        return self.root / "run.log"


@dataclass
class _InputProgress:
    """What of one input has arrived. Rows come back in any order (each travels as its own block):
    the input is finished when all `num_clips` clip rows (or its one input row) are in, and as many
    audio-only segment rows as the audio_segments stage announced on it (`num_audio_segments`,
    carried by every clip cut from it)."""

    uri: str
    expected: int | None = None      # clip rows (or 1 for an input-level row)
    main_rows: int = 0
    segments_announced: int = 0
    segments_arrived: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    open_keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> its record, not yet in a shard
    download: Path | None = None
    finished: bool = False

    def add(self, row: Row) -> None:
        if row.get("record_type") == "audio_clip":
            self.segments_arrived += 1
            return
        self.expected = row.get("num_clips", 1) if row.get("record_type") == "clip" else 1
        self.main_rows += 1
        self.segments_announced = max(self.segments_announced, int(row.get("num_audio_segments") or 0))

    def all_rows_in(self) -> bool:
        if self.expected is None or self.main_rows < self.expected:
            return False
        return self.segments_arrived >= self.segments_announced


class OutputCollector:
    """Turns finished rows into shard plans, records and completion markers (see the module docstring)."""

    def __init__(self, paths: RunPaths, config: CurationConfig, total_inputs: int):
        self.paths = paths
        self.planner = ShardPlanner(paths.shards, config.output.shard_max_samples, config.output.shard_max_bytes)
        self.markers = Markers(paths.state)
        self.inputs: dict[str, _InputProgress] = {}
        self.key_owner: dict[str, str] = {}
        self.total = total_inputs
        self.finished = 0   # inputs whose rows are all in
        self.committed = 0  # inputs with a marker
        self.kept = 0       # kept samples of finished inputs

    def add(self, row: Row) -> list[ShardSpec]:
        """Take one row that left the pipeline; return the shards it filled, to be written."""
        progress = self.inputs.setdefault(row["input_id"], _InputProgress(row["uri"]))
        progress.add(row)
        if row.get("path") and Path(row["path"]).parent == self.paths.downloads:
            progress.download = Path(row["path"])
        record = make_record(row)
        progress.records.append(record)
        full: list[ShardSpec] = []
        if row.get("status") == KEPT and row.get("record_type") in _SAMPLE_TYPES:
            key = row["key"]
            if key in self.planner.written:  # written by a run that died before this input's marker
                record["shard"] = self.planner.written[key]
                _remove_work_files(row)
            else:
                self.key_owner[key] = row["input_id"]
                progress.open_keys[key] = record
                files = {"flac": row["flac_path"]}
                if row["record_type"] == "clip":
                    files["mp4"] = row["mp4_path"]
                full = self.planner.add(ShardSample(key, row["sample_json"], files))
        elif row.get("record_type") in _SAMPLE_TYPES:
            # Not kept, whichever stage said so (a quarantined row may not name its files): nothing may stay.
            _remove_work_files(row, self.paths.clips)
        elif row.get("status") == QUARANTINED:
            # An input-level stage that writes files (audio_segments) failed part-way: its keys share a prefix.
            for stale in self.paths.clips.glob(f"{source_prefix(row['uri'])}-*"):
                stale.unlink(missing_ok=True)
        self._update(row["input_id"])
        return full

    def shard_written(self, shard: WrittenShard) -> None:
        """`shard` is renamed into place: its keys' records name it, and inputs it completes are committed.
        Only the inputs owning its keys are looked at."""
        self.planner.written_as(shard)
        owners = set()
        for key in shard.keys:
            owner_id = self.key_owner.pop(key, None)
            owner = self.inputs.get(owner_id) if owner_id is not None else None
            if owner is not None:
                owner.open_keys.pop(key)["shard"] = shard.name
                owners.add(owner_id)
        for input_id in owners:
            self._update(input_id)

    def flush(self) -> list[ShardSpec]:
        """The open shard, to be written though not full (end of input, or open too long)."""
        return self.planner.flush()

    def check_all_committed(self) -> None:
        unfinished = [p.uri for p in self.inputs.values()]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} inputs did not finish (rows missing from the pipeline): "
                               f"{unfinished[:5]}; rerun to resume them")

    def _update(self, input_id: str) -> None:
        progress = self.inputs[input_id]
        if not progress.finished and progress.all_rows_in():
            progress.finished = True
            self._on_finished(progress)
        if progress.finished and not progress.open_keys:
            self.markers.write(input_id, progress.uri, progress.records)
            del self.inputs[input_id]
            self.committed += 1

    def _on_finished(self, progress: _InputProgress) -> None:
        if progress.download is not None:
            progress.download.unlink(missing_ok=True)  # its clips are cut: no stage reads the source again
        self.finished += 1
        kept = sum(r["status"] == KEPT and r.get("record_type") != "audio_clip" for r in progress.records)
        audio = sum(r["status"] == KEPT and r.get("record_type") == "audio_clip" for r in progress.records)
        self.kept += kept + audio
        reasons = sorted({f"{r['stage']}: {r['reason']}" for r in progress.records if r["status"] != KEPT})
        outcome = f"kept {kept} clip{'s' if kept != 1 else ''}" if kept else "no clip kept"
        log.info(f"input {self.finished}/{self.total} finished: {progress.uri} -> {outcome}"
                 + (f" (+{audio} audio segments)" if audio else "")
                 + (f"; rejected: {', '.join(reasons)}" if reasons else ""))


def _remove_work_files(row: Row, clips_dir: Path | None = None) -> None:
    """Delete a sample row's work files: those it names and, given `clips_dir`, those its key names there."""
    for name in ("mp4_path", "flac_path", "frames_path"):
        if row.get(name):
            Path(row[name]).unlink(missing_ok=True)
    if clips_dir is not None and row.get("key"):
        for stale in clips_dir.glob(f"{glob.escape(row['key'])}.*"):  # .mp4, .flac, .frames.mov
            stale.unlink(missing_ok=True)
