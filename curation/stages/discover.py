"""Discover inputs: local files and directories, fsspec URLs, and manifest files listing them.

Every input the user names gets exactly one row, under the name the user gave (made absolute, symlinks
not resolved), whatever is there: a name that cannot become clips (a directory, a dangling link, a
second listing of a file) gets a rejected row saying why and what to do. Discovery never raises for one
input; a path in `inputs.paths` that does not exist at all is a typo in the config and fails the run
before any work (`InputNotFoundError`, listing every missing path).

Names need not be UTF-8: the row's `uri` is the readable form (`curation.keys.display_name`, bad bytes
as `\\xNN`) and `location` the name ffmpeg opens; `input_id` hashes the name's real bytes.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..keys import display_name, input_id
from ..records import InputRow
from ..stage import KEPT, Row, Stage

# Read in place by ffmpeg/OpenCV; any other scheme is copied to local disk by the probe stage.
DIRECT_SCHEMES = ("http://", "https://")


class InputNotFoundError(FileNotFoundError):
    """Paths named in the config (inputs.paths) do not exist."""

    @classmethod
    def listing(cls, missing: list[str]) -> InputNotFoundError:
        lines = "\n  ".join(display_name(m) for m in missing)
        return cls(f"inputs.paths: nothing exists at {len(missing)} of its entries (no file, directory or URL); "
                   f"fix inputs.paths:\n  {lines}")


class ManifestError(ValueError):
    """Lines of the inputs manifest that cannot be read; the message lists each with its line number."""


def is_url(spec: str) -> bool:
    """A remote URL (fsspec or http); `file://` URLs are local paths."""
    return "://" in spec and not spec.startswith("file://")


def local_path(spec: str, base: str | None = None) -> str:
    """The absolute form of a local path spec (`~` expanded, `file://` dropped); symlinks are not resolved."""
    path = os.path.expanduser(spec.removeprefix("file://"))
    return os.path.abspath(os.path.join(base or os.getcwd(), path))


def missing_local_paths(paths: list[str], base: str | None = None) -> list[str]:
    """The local paths among `paths` with nothing at all there (a dangling link is something): config typos."""
    missing = []
    for spec in paths:
        if not is_url(spec):
            try:
                if not os.path.lexists(local_path(spec, base)):
                    missing.append(spec)
            except (ValueError, UnicodeError):  # a NUL byte or an unencodable name: never an existing path
                missing.append(spec)
    return missing


def manifest_entries(path: str | Path) -> tuple[list[Row], list[str]]:
    """Spec rows of a manifest (.jsonl {"path", "caption"?}, .csv with a `path` column, else one path a line),
    and one problem per line that cannot be read, as `<file>:<line>: <problem>`.

    Bytes that are not UTF-8 are kept (surrogate-escaped), so a path naming a non-UTF-8 file still finds it.
    """
    path = Path(path)
    base = str(path.parent.absolute())
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    specs: list[Row] = []
    problems: list[str] = []

    def add(where: str, spec: object, caption: object) -> None:
        if not isinstance(spec, str) or not spec.strip():
            problems.append(f"{where}: no path (each entry needs a 'path': a file name or URL)")
            return
        if caption is not None and not isinstance(caption, str):
            problems.append(f"{where}: 'caption' must be a string, got {type(caption).__name__}")
            return
        specs.append({"spec": spec, "caption": caption or None, "base": base, "origin": where,
                      "listed_in_manifest": True})

    if path.suffix == ".jsonl":
        # split("\n"), not splitlines(): a file name may hold \x1c, \x85 or U+2028, which splitlines cuts at.
        for n, line in enumerate(text.split("\n"), 1):
            where = f"{path.name}:{n}"
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(entry, dict):
                problems.append(f'{where}: each line must be a JSON object like {{"path": "a.mp4", "caption": "..."}}, '
                                f"got {type(entry).__name__}")
                continue
            add(where, entry.get("path"), entry.get("caption"))
    elif path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if "path" not in (reader.fieldnames or []):
            problem = (f"{path.name}:1: a CSV manifest needs a 'path' column (and optionally 'caption'), "
                       f"found columns {reader.fieldnames}")
            return [], [problem]
        try:
            for record in reader:
                add(f"{path.name}:{reader.line_num}", record.get("path"), record.get("caption") or None)
        except csv.Error as exc:
            problems.append(f"{path.name}:{reader.line_num}: not valid CSV ({exc})")
    else:
        for n, line in enumerate(text.split("\n"), 1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                add(f"{path.name}:{n}", entry, None)
    return specs, problems


def read_manifest(path: str | Path) -> list[Row]:
    """Spec rows from a manifest; raises ManifestError listing every line that cannot be read."""
    specs, problems = manifest_entries(path)
    if problems:
        raise ManifestError(f"{path}: {len(problems)} lines cannot be read:\n  " + "\n  ".join(problems))
    return specs


@dataclass
class _Found:
    """One named thing, before duplicates are sorted out: an input, or a rejection of it."""

    name: str                      # absolute path or URL, as named (may hold surrogate-escaped bytes)
    origin: str                    # where it was named: inputs.paths[i] or <manifest>:<line>
    in_manifest: bool
    caption: str | None = None
    real: str | None = None        # the file it is, links resolved: two names of one file are duplicates
    reason: str | None = None
    detail: str = ""


_KINDS = {stat.S_IFIFO: "named pipe", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device"}


class DiscoverInputs(Stage):
    """Expand spec rows ({"spec": path or URL}) into one row per named input.

    Runs on the driver before Ray starts: the list is needed to skip finished inputs and to
    size the progress bars, and a mistyped path should fail before any cluster work.

    inputs.paths specs: a directory is searched recursively (links to directories are not followed) and
    every entry with a media extension gets a row, directories and dangling links among them; an fsspec
    URL is listed the same way. Manifest specs (`listed_in_manifest`, or all specs when `strict` is
    False) name one file each and are not expanded: a directory gets a rejected row, and URLs are checked
    by the probe stage on the workers (one request per input there, not a million on the driver).
    The same name given twice in inputs.paths (a file inside a listed directory) is one input; a name the
    manifest repeats, or a second name of one file (a link), gets a rejected `duplicate` row.
    """

    name: ClassVar[str] = "discover"

    def __init__(self, extensions: list[str], strict: bool = True):
        self.extensions = tuple(e.lower() for e in extensions)
        # strict: a missing path is an error (config paths); otherwise a rejected record (manifest entries).
        self.strict = strict

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        names: dict[str, _Found] = {}
        reals: dict[str, _Found] = {}
        missing: list[str] = []
        for spec in rows:
            for found in self._expand(spec, missing):
                first = names.get(found.name)
                if first is not None:
                    if not (found.in_manifest or first.in_manifest):
                        continue  # inputs.paths overlap (a file and its directory): one input
                    out.append(self._duplicate(found, f"listed again at {found.origin}, already listed at "
                                               f"{first.origin}; each input is processed once: remove one of them",
                                               id_suffix=found.origin))
                    continue
                names[found.name] = found
                other = reals.get(found.real) if found.real is not None else None
                if other is not None:
                    out.append(self._duplicate(found, f"the same file as {display_name(other.name)} (listed at "
                                               f"{other.origin}), through a link; it is processed once, under that "
                                               "name: remove one of them"))
                    continue
                if found.real is not None and found.reason is None:
                    reals[found.real] = found
                row = self._row(found.name, found.caption)
                out.append(row if found.reason is None else self.reject(row, found.reason, found.detail))
        if missing:
            raise InputNotFoundError.listing(missing)
        return out

    def _duplicate(self, found: _Found, detail: str, id_suffix: str | None = None) -> Row:
        # A repeated name needs an id of its own (ids name completion markers); the listing's place keeps it stable.
        row = self._row(found.name, found.caption, id_name=found.name + "\0" + id_suffix if id_suffix else None)
        return self.reject(row, "duplicate", detail)

    def _row(self, name: str, caption: str | None, id_name: str | None = None) -> InputRow:
        row: InputRow = {"record_type": "input", "input_id": input_id(id_name or name), "uri": display_name(name),
                    "location": name, "status": KEPT, "scores": {}}
        if caption:
            row["caption"] = caption
        return row

    def _expand(self, spec: Row, missing: list[str]) -> Iterator[_Found]:
        raw = str(spec["spec"])
        in_manifest = bool(spec.get("listed_in_manifest", not self.strict))
        origin = spec.get("origin") or display_name(raw)
        caption = spec.get("caption")

        def found(name: str, real: str | None = None, reason: str | None = None, detail: str = "") -> _Found:
            return _Found(name, origin, in_manifest, caption, real, reason, detail)

        if is_url(raw):
            if raw.startswith(DIRECT_SCHEMES) or in_manifest:
                yield found(raw)  # the probe stage reads or downloads it, and says what failed
            else:
                yield from self._expand_url(raw, found, missing)
            return
        name = local_path(raw, spec.get("base"))
        try:
            os.lstat(name)
        except (FileNotFoundError, NotADirectoryError):
            if in_manifest:
                yield found(name, reason="not_found", detail=f"no such file (listed at {origin}); fix the "
                            "manifest line or restore the file")
            else:
                missing.append(raw)
            return
        except (ValueError, UnicodeError) as exc:  # a NUL byte in the name, an unencodable surrogate
            yield found(raw, reason="bad_name", detail=f"not a usable file name ({exc}); fix the manifest line")
            return
        except OSError as exc:
            fix = "fix the permissions of its directory for the user running the pipeline" \
                if isinstance(exc, PermissionError) else "fix the name or the file system"
            yield found(name, reason="unreadable", detail=f"cannot look at it ({exc.strerror}); {fix}")
            return
        if not in_manifest and os.path.isdir(name):
            yield from self._walk(name, found)  # a directory, or a link to one, named in inputs.paths
            return
        yield self._classify(name, found, directory_detail=(
            "a directory, not a media file: list its files in the manifest, or name the directory in "
            "inputs.paths to search it"))

    def _classify(self, name: str, found, directory_detail: str, real: str | None = None) -> _Found:
        """The row of one file name: an input, or why it is none (dangling link, directory, pipe...)."""
        try:
            st = os.stat(name)
        except OSError as exc:
            if not os.path.islink(name):  # gone between listing and looking
                return found(name, reason="not_found", detail=f"it vanished while inputs were listed ({exc.strerror})")
            try:
                target = display_name(os.readlink(name))
            except OSError:
                target = "?"
            what = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be reached ({exc.strerror})"
            return found(name, reason="dangling_symlink",
                         detail=f"a symbolic link to {target}, which {what}: fix or remove the link")
        if stat.S_ISDIR(st.st_mode):
            return found(name, reason="is_directory", detail=directory_detail)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
            return found(name, reason="not_a_file", detail=f"a {kind}, not a regular file: give the media file itself")
        return found(name, real=real or os.path.realpath(name))

    def _walk(self, root: str, found) -> Iterator[_Found]:
        """Every entry with a media extension under `root`, depth first in name order; links to
        directories are not followed (a link to / would search the machine)."""
        stack = [(root, os.path.realpath(root))]
        while stack:
            directory, real_dir = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                yield found(directory, reason="unreadable",
                            detail=f"cannot list this directory ({exc.strerror}); media files under it were not "
                                   "searched: fix its permissions for the user running the pipeline")
                continue
            subdirs = []
            for entry in entries:
                try:
                    is_link = entry.is_symlink()
                    is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_link = is_dir = False
                if is_dir:
                    subdirs.append((entry.path, os.path.join(real_dir, entry.name)))
                if os.path.splitext(entry.name)[1].lower() not in self.extensions:
                    continue
                yield self._classify(
                    entry.path, found, real=None if is_link else os.path.join(real_dir, entry.name),
                    directory_detail="a link to a directory, named like a media file (links to directories are "
                                     "not followed): name its target in inputs.paths to search it" if is_link else
                                     "a directory named like a media file, not a media file (files under it with "
                                     "media extensions are inputs of their own): rename it to drop this record")
            stack.extend(reversed(subdirs))

    def _expand_url(self, url: str, found, missing: list[str]) -> Iterator[_Found]:
        try:
            import fsspec

            fs, root = fsspec.core.url_to_fs(url)
            if fs.isdir(root):
                files = sorted(p for p in fs.find(root) if os.path.splitext(p)[1].lower() in self.extensions)
                for p in files:
                    yield found(fs.unstrip_protocol(p))
                return
            exists = fs.exists(root)
        except Exception as exc:  # noqa: BLE001 - credentials, network, a missing fsspec backend: a record
            yield found(url, reason="unreachable",
                        detail=f"cannot list it ({type(exc).__name__}: {str(exc)[:300]}); check the URL, the "
                               "credentials and the network (or install the fsspec backend the error names)")
            return
        if exists:
            yield found(url)
        else:
            missing.append(url)
