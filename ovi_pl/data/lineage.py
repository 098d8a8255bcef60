"""The curated datasets behind a list of shard URLs: the `dataset.json` beside each shard's directory."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from data_specs.lineage import DATASET_FILE, DatasetRecord, parse_dataset_record

from .urls import is_local, local_path


@dataclass
class DatasetLineage:
    """The records found for a set of shards, and the shard directories that have none."""

    records: list[DatasetRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [r.dataset_id for r in self.records]


def find_dataset_records(urls: list[str]) -> DatasetLineage:
    """Read `dataset.json` from each directory that holds one of `urls` (local or fsspec; `pipe:` and
    http(s) shards have no directory to look in and count as missing). Several directories with one
    record each give one record per dataset."""
    found = DatasetLineage()
    for directory in dict.fromkeys(_directory(u) for u in urls):
        text = _read(f"{directory}/{DATASET_FILE}") if directory else None
        if text is None:
            found.missing.append(directory or "(stream)")
            continue
        record = parse_dataset_record(text, f"{directory}/{DATASET_FILE}")
        if record.dataset_id not in found.ids:
            found.records.append(record)
    return found


def _directory(url: str) -> str | None:
    if is_local(url):
        return os.path.dirname(os.path.abspath(local_path(url)))
    if urlparse(url).scheme in ("pipe", "http", "https"):
        return None
    return url.rsplit("/", 1)[0]


def _read(path: str) -> str | None:
    if is_local(path):
        return open(path).read() if os.path.isfile(path) else None
    import fsspec

    try:
        with fsspec.open(path, "r") as f:
            return f.read()
    except FileNotFoundError:
        return None
