"""Dataset lineage: the id of a curated shard set and the `dataset.json` that sits beside its shards.

Curation writes `dataset.json` into the directory that holds the shard tars, so a reader that only
knows the shard URLs finds it next to them. Its `dataset_id` is a hash of the run's manifest, its
curation settings and the code version: a re-run or resume that writes the same data gets the same id,
and any change to what was kept (the manifest) or how (the settings) gives a new one. See SPEC.md,
"Lineage".
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .version import SCHEMA_VERSION

DATASET_FILE = "dataset.json"
# Bumped when the id's inputs or the file's fields change meaning.
LINEAGE_FORMAT = 1
_REQUIRED = ("format", "dataset_id", "shards_dir", "code_version", "config", "summary")


class DatasetRecordError(ValueError):
    """A dataset.json that is not a lineage record this code can read."""


@dataclass(frozen=True)
class DatasetRecord:
    """What `dataset.json` holds."""

    format: int
    dataset_id: str
    shards_dir: str                # where the shards were written (absolute)
    curation_dir: str | None       # the curation run's output dir (manifest, report, run.log)
    code_version: dict[str, Any]   # schema_version, git_commit, git_dirty
    config: dict[str, Any]         # the curation settings that shape the data
    summary: dict[str, Any]        # the run's counts (report/summary.json)
    created: str = ""              # UTC time the file was written; not part of the id
    # A shard set made from another one (the latent stage's output): {"dataset_id", "shards_dir"} of its
    # source, whose record holds the curation run; None for a curation run's own shards.
    derived_from: dict[str, str] | None = None


def code_version(source_dir: Path | None = None) -> dict[str, Any]:
    """The shard schema version and the git commit of `source_dir` (default: this package's checkout),
    `git_commit` None where it is not a git checkout. `git_dirty` marks uncommitted changes to tracked
    files, which the commit alone does not pin."""
    where = str(source_dir or Path(__file__).resolve().parent)
    commit = _git(where, "rev-parse", "HEAD")
    dirty = bool(_git(where, "status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"schema_version": SCHEMA_VERSION, "git_commit": commit, "git_dirty": dirty}


def _git(cwd: str, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def dataset_id(manifest: Path, config: Mapping[str, Any], code: Mapping[str, Any]) -> str:
    """`ds-` and 16 hex digits of a SHA-256 over the manifest's bytes, the settings and the code version."""
    digest = _header_digest({"format": LINEAGE_FORMAT, "config": config, "code_version": code})
    with open(manifest, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"ds-{digest.hexdigest()[:16]}"


def derived_dataset_id(source_id: str, config: Mapping[str, Any], code: Mapping[str, Any],
                       shard_names: list[str]) -> str:
    """The id of a shard set made from dataset `source_id` by a stage with `config`: it changes with the
    source, the stage's settings, the code and the shards written, not with where they were written."""
    header = {"format": LINEAGE_FORMAT, "derived_from": source_id, "config": config, "code_version": code,
              "shards": sorted(shard_names)}
    return f"ds-{_header_digest(header).hexdigest()[:16]}"


def _header_digest(header: Mapping[str, Any]) -> Any:
    return hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":"), default=str).encode())


def write_dataset_file(shards_dir: Path, manifest: Path, config: Mapping[str, Any], summary: Mapping[str, Any],
                       curation_dir: Path | None = None, code: Mapping[str, Any] | None = None) -> DatasetRecord:
    """Compute the id and write `shards_dir/dataset.json` (atomically); return what was written."""
    code = dict(code if code is not None else code_version())
    return _write_record(DatasetRecord(
        format=LINEAGE_FORMAT, dataset_id=dataset_id(manifest, config, code),
        shards_dir=str(Path(shards_dir).resolve()),
        curation_dir=str(Path(curation_dir).resolve()) if curation_dir is not None else None, code_version=code,
        config=dict(config), summary=dict(summary), created=_now()))


def write_derived_dataset_file(shards_dir: Path, source: DatasetRecord, config: Mapping[str, Any],
                               summary: Mapping[str, Any], shard_names: list[str]) -> DatasetRecord:
    """Write `shards_dir/dataset.json` for a shard set made from `source`'s shards (e.g. by the latent
    stage, with its settings as `config`); it keeps the source's curation dir, so lineage reaches the
    curation run through it."""
    code = code_version()
    return _write_record(DatasetRecord(
        format=LINEAGE_FORMAT, dataset_id=derived_dataset_id(source.dataset_id, config, code, shard_names),
        shards_dir=str(Path(shards_dir).resolve()), curation_dir=source.curation_dir, code_version=code,
        config=dict(config), summary=dict(summary), created=_now(),
        derived_from={"dataset_id": source.dataset_id, "shards_dir": source.shards_dir}))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_record(record: DatasetRecord) -> DatasetRecord:
    path = Path(record.shards_dir) / DATASET_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2, default=str))
    tmp.replace(path)
    return record


def parse_dataset_record(text: str, source: str) -> DatasetRecord:
    """A `dataset.json`'s text as a record; DatasetRecordError naming `source` if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetRecordError(f"{source} is not JSON ({exc}); re-run curation to rewrite it") from None
    missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise DatasetRecordError(f"{source} lacks {missing}; it is not a lineage record "
                                 "(re-run curation to rewrite it)")
    if data["format"] != LINEAGE_FORMAT:
        raise DatasetRecordError(f"{source} has lineage format {data['format']!r}, this code reads {LINEAGE_FORMAT}; "
                                 "update ovi-pl (data_specs)")
    return DatasetRecord(**{k: data.get(k) for k in DatasetRecord.__dataclass_fields__ if k in data})


def read_dataset_file(path: Path) -> DatasetRecord:
    return parse_dataset_record(Path(path).read_text(), str(path))
