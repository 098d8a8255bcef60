"""Shard URLs: expanding patterns into a list of shards and opening one shard as a byte stream.

Accepted forms: local paths, globs (`shards/*.tar`), brace patterns (`train-{000..099}.tar`),
directories (every `*.tar` below them), `pipe:` commands (`pipe:aws s3 cp s3://b/x.tar -`),
http(s) URLs, and any fsspec URL (`s3://bucket/train-*.tar`, `gs://...`) when the matching
fsspec backend is installed.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import IO
from urllib.parse import urlparse

import braceexpand

# Schemes webdataset's gopen streams itself (a subprocess or curl); everything else with a scheme
# goes through fsspec.
_GOPEN_SCHEMES = frozenset({"pipe", "http", "https"})
_GLOB_CHARS = frozenset("*?[")


def is_local(url: str) -> bool:
    scheme = urlparse(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(url: str) -> str:
    return urlparse(url).path if url.startswith("file:") else url


def expand_shard_urls(patterns: str | Iterable[str]) -> list[str]:
    """The shard URLs named by `patterns`, in the order given, each pattern's matches sorted.

    Raises FileNotFoundError for a local path or glob that matches nothing, ValueError if the
    result is empty or names a shard twice (a shard read twice would repeat its samples).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    urls: list[str] = []
    for pattern in patterns:
        for url in braceexpand.braceexpand(pattern):
            urls += _expand_one(url)
    if not urls:
        raise ValueError(f"no shards in {list(patterns)}")
    dupes = sorted({u for u in urls if urls.count(u) > 1})
    if dupes:
        raise ValueError(f"shards listed more than once: {dupes[:5]}; each shard must appear once")
    return urls


def _expand_one(url: str) -> list[str]:
    scheme = urlparse(url).scheme
    if scheme in _GOPEN_SCHEMES:
        return [url]
    if not is_local(url):
        if not _GLOB_CHARS & set(url):
            return [url]
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(url)
        if not paths:
            raise FileNotFoundError(f"{url} matches no objects")
        return sorted(fs.unstrip_protocol(p) for p in paths)
    path = local_path(url)
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.tar"), recursive=True))
        if not found:
            raise FileNotFoundError(f"{path} holds no .tar shards")
        return found
    if _GLOB_CHARS & set(path):
        found = sorted(glob.glob(path, recursive=True))
        if not found:
            raise FileNotFoundError(f"{path} matches no files")
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such shard")
    return [path]


def open_shard(url: str) -> IO[bytes]:
    """A binary stream over one shard. Local files come back seekable (readers may skip bytes)."""
    scheme = urlparse(url).scheme
    if is_local(url):
        return open(local_path(url), "rb")
    if scheme in _GOPEN_SCHEMES:
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


def cached_local_copy(url: str, cache_dir: str) -> str:
    """A local file holding the shard at `url`, downloaded once into `cache_dir` (named by a hash of
    the URL, so ranks and runs on one machine share it; delete the folder to fetch shards again)."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, hashlib.sha256(url.encode()).hexdigest()[:32] + ".tar")
    if not os.path.exists(path):
        # Written under a temporary name and renamed, so a reader never sees half a shard.
        fd, part = tempfile.mkstemp(dir=cache_dir, suffix=".part")
        try:
            with open_shard(url) as source, os.fdopen(fd, "wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 22)
            os.replace(part, path)
        finally:
            if os.path.exists(part):
                os.unlink(part)
    return path
