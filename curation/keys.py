"""Deterministic ids: the same source gives the same input id and clip keys on every run.

Resuming depends on it: a rerun recognises finished inputs by id and already-written clips by key.

File names are bytes on POSIX and need not be UTF-8; Python hands them over as str with the bad bytes
as lone surrogates (PEP 383). `input_id` hashes those exact bytes, and `display_name` is the readable
text (bad bytes as `\\xNN`) that records, logs and markers carry; ffmpeg gets the original name.
"""
from __future__ import annotations

import hashlib
import re

_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")


def name_bytes(name: str) -> bytes:
    """The bytes a file name or URL stands for: UTF-8, with surrogate-escaped bytes given back as they were."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (e.g. "\\ud800" in JSON)
        return name.encode("utf-8", "surrogatepass")


def display_name(name: str) -> str:
    """`name` as printable UTF-8 text: itself when valid, else its undecodable bytes as `\\xNN` escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name_bytes(name).decode("utf-8", "backslashreplace")


def input_id(uri: str) -> str:
    """Stable id of a source: a hash of its name's bytes (the absolute path for local files, or the URL)."""
    return hashlib.sha1(name_bytes(uri)).hexdigest()[:16]


def clip_key(uri: str, clip_index: int) -> str:
    """WebDataset key of clip `clip_index` of `uri`: readable stem + source hash + index; no dots (SPEC.md)."""
    return f"{source_prefix(uri)}-{clip_index:05d}"


def audio_segment_key(uri: str, segment_index: int) -> str:
    """WebDataset key of audio-only segment `segment_index` of `uri`; never equal to a clip key."""
    return f"{source_prefix(uri)}-a{segment_index:05d}"


def source_prefix(uri: str) -> str:
    """What every clip and audio-segment key of `uri` starts with (then `-NNNNN` or `-aNNNNN`)."""
    stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = _SLUG_RE.sub("_", stem).strip("_")[:48] or "clip"
    return f"{slug}-{input_id(uri)[:12]}"
