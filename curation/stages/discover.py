"""Discover inputs: local files and directories, fsspec URLs, and manifest files listing them."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import ClassVar

from ..keys import input_id
from ..stage import KEPT, Row, Stage

# Read in place by ffmpeg/OpenCV; any other scheme is copied to local disk by the probe stage.
DIRECT_SCHEMES = ("http://", "https://")


class InputNotFoundError(FileNotFoundError):
    """A path named in the config does not exist."""


def read_manifest(path: str | Path) -> list[Row]:
    """Spec rows from a manifest: .jsonl ({"path", "caption"?}), .csv (`path` column) or one path a line."""
    path = Path(path)
    base = path.parent
    specs: list[Row] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            entry = json.loads(line)
            if not isinstance(entry, dict) or "path" not in entry:
                raise ValueError(f"{path}:{n}: each line must be a JSON object with a 'path' key")
            specs.append({"spec": entry["path"], "caption": entry.get("caption"), "base": str(base)})
    elif path.suffix == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: a CSV manifest needs a 'path' column, found {reader.fieldnames}")
            specs += [{"spec": r["path"], "caption": r.get("caption") or None, "base": str(base)} for r in reader]
    else:
        specs += [{"spec": line.strip(), "caption": None, "base": str(base)} for line in path.read_text().splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    return specs


class DiscoverInputs(Stage):
    """Expand spec rows ({"spec": path or URL}) into one row per media file.

    Runs on the driver before Ray starts: the list is needed to skip finished inputs and to
    size the progress bars, and a mistyped path should fail before any cluster work.
    """

    name: ClassVar[str] = "discover"

    def __init__(self, extensions: list[str], strict: bool = True):
        self.extensions = tuple(e.lower() for e in extensions)
        # strict: a missing path is an error (config paths); otherwise a rejected record (manifest entries).
        self.strict = strict

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        seen: set[str] = set()
        for spec in rows:
            for row in self._expand(spec):
                if row["uri"] not in seen:
                    seen.add(row["uri"])
                    out.append(row)
        return out

    def _expand(self, spec: Row) -> list[Row]:
        raw = str(spec["spec"])
        caption = spec.get("caption")
        if "://" in raw and not raw.startswith("file://"):
            return [self._input(uri, caption) for uri in self._expand_url(raw)]
        path = Path(raw.removeprefix("file://")).expanduser()
        if not path.is_absolute():
            path = Path(spec.get("base") or os.getcwd()) / path
        path = path.resolve()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)
            return [self._input(str(p), caption) for p in files]
        if path.is_file():
            return [self._input(str(path), caption)]
        if self.strict:
            raise InputNotFoundError(f"input {raw!r}: no such file or directory ({path}); fix inputs.paths")
        return [self.reject(self._input(str(path), caption), "not_found", f"{path} does not exist")]

    def _expand_url(self, url: str) -> list[str]:
        if url.startswith(DIRECT_SCHEMES):
            return [url]
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if fs.isdir(root):
            found = sorted(p for p in fs.find(root) if p.lower().endswith(self.extensions))
            return [fs.unstrip_protocol(p) for p in found]
        if fs.exists(root):
            return [url]
        if self.strict:
            raise InputNotFoundError(f"input {url!r}: nothing at that URL; fix inputs.paths")
        return [url]

    @staticmethod
    def _input(uri: str, caption: str | None) -> Row:
        row: Row = {"record_type": "input", "input_id": input_id(uri), "uri": uri, "status": KEPT, "scores": {}}
        if caption:
            row["caption"] = caption
        return row
