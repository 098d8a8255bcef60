"""Thumbnail strips of clips for the report: a few frames side by side in one small JPEG.

A strip is made while its clip is being cut: clips that a later stage rejects are deleted at once, and
kept ones end up inside shard tars, so the report could not make them afterwards. It is one more output
of transcode's ffmpeg command, which decodes the clip's frames anyway (a second decode of a 704x1280
clip cost 0.55 s of CPU, about a tenth of the transcode). Strips wait in `_work/thumbs/` until the
report takes them into `report/thumbs/`.
"""
from __future__ import annotations

import os
from pathlib import Path

STRIP_FRAMES = 4
STRIP_HEIGHT = 96
_JPEG_QUALITY = 5  # ffmpeg's -q:v, 2 (best) .. 31: small files, faces still readable


def work_thumbs_dir(clips_dir: str | Path) -> Path:
    """Where strips wait during a run: next to the transcoded clips' directory (`<output.dir>/_work/thumbs`)."""
    return Path(clips_dir).parent / "thumbs"


class StripOutput:
    """The strip of a clip of `num_frames` frames, as extra ffmpeg output arguments (`args`) for a command
    whose input 0 is the clip's source; `keep` gives it its name once the command succeeded, `discard`
    removes what a failed command left. Written under a temporary name, so a strip is whole or absent."""

    def __init__(self, dest: Path, num_frames: int, video_filters: str = ""):
        self.dest = dest
        self.tmp = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
        count = min(STRIP_FRAMES, num_frames)
        picks = sorted({round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count)})
        # `select` keeps the chosen frames of the filtered stream (the clip's own frame numbers when
        # `video_filters` are the clip's), `tile` joins them; at a short clip's end it tiles those it got.
        select = "+".join(f"eq(n\\,{i})" for i in picks)
        self.filters = ",".join(f for f in (video_filters, f"select='{select}'", f"scale=-2:{STRIP_HEIGHT}",
                                            f"tile={len(picks)}x1") if f)

    def args(self) -> list[str]:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        return ["-map", "0:v:0", "-vf", self.filters, "-frames:v", "1", "-q:v", str(_JPEG_QUALITY),
                "-f", "image2", str(self.tmp)]

    def keep(self) -> Path | None:
        """The strip under its name; None where the clip gave no frame to show."""
        if not self.tmp.exists():
            return None
        os.replace(self.tmp, self.dest)
        return self.dest

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
