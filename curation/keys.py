"""Deterministic ids: the same source gives the same input id and clip keys on every run.

Resuming depends on it: a rerun recognises finished inputs by id and already-written clips by key.
"""
from __future__ import annotations

import hashlib
import re

_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")


def input_id(uri: str) -> str:
    """Stable id of a source: a hash of its normalised URI (absolute path for local files)."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def clip_key(uri: str, clip_index: int) -> str:
    """WebDataset key of clip `clip_index` of `uri`: readable stem + source hash + index; no dots (SPEC.md)."""
    stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = _SLUG_RE.sub("_", stem).strip("_")[:48] or "clip"
    return f"{slug}-{input_id(uri)[:12]}-{clip_index:05d}"
