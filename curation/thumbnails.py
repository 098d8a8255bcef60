"""Thumbnail strips of clips for the report: a few frames side by side in one small JPEG.

A strip is made while its clip exists (transcode calls `write_strip` right after cutting it): clips that a
later stage rejects are deleted at once, and kept ones end up inside shard tars, so the report could not
make them afterwards. Strips wait in `_work/thumbs/` until the report takes them into `report/thumbs/`.
"""
from __future__ import annotations

import os
from pathlib import Path

from ovi_pl.media.tools import FFMPEG, run_tool

STRIP_FRAMES = 4
STRIP_HEIGHT = 96
_JPEG_QUALITY = 5  # ffmpeg's -q:v, 2 (best) .. 31: small files, faces still readable


def work_thumbs_dir(clips_dir: str | Path) -> Path:
    """Where strips wait during a run: next to the transcoded clips' directory (`<output.dir>/_work/thumbs`)."""
    return Path(clips_dir).parent / "thumbs"


def write_strip(video: str | Path, num_frames: int, dest: Path, timeout_s: float = 60.0) -> Path | None:
    """`STRIP_FRAMES` evenly spaced frames of `video` (which has `num_frames` frames), scaled to
    `STRIP_HEIGHT` px and tiled left to right into the JPEG `dest`. None for a video without frames.

    One ffmpeg pass: `select` keeps the chosen frames, `tile` joins them. Written under a temporary name
    and renamed, so a strip is whole or absent.
    """
    if num_frames <= 0:
        return None
    count = min(STRIP_FRAMES, num_frames)
    picks = sorted({round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count)})
    select = "+".join(f"eq(n\\,{i})" for i in picks)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
    try:
        run_tool([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(video), "-an",
                  "-vf", f"select='{select}',scale=-2:{STRIP_HEIGHT},tile={len(picks)}x1",
                  "-frames:v", "1", "-q:v", str(_JPEG_QUALITY), "-f", "image2", str(tmp)], timeout_s)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
