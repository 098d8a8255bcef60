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
    return f"{_source_prefix(uri)}-{clip_index:05d}"


def audio_segment_key(uri: str, segment_index: int) -> str:
    """WebDataset key of audio-only segment `segment_index` of `uri`; never equal to a clip key."""
    return f"{_source_prefix(uri)}-a{segment_index:05d}"


def _source_prefix(uri: str) -> str:
    stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = _SLUG_RE.sub("_", stem).strip("_")[:48] or "clip"
    return f"{slug}-{input_id(uri)[:12]}"
