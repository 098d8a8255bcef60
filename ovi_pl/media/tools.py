"""ffprobe/ffmpeg through subprocess, with timeouts and errors that carry ffmpeg's own last words."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


class MediaToolError(RuntimeError):
    """ffmpeg or ffprobe failed; the message holds the command's tail of stderr."""


def run_tool(args: list[str], timeout_s: float = 600.0) -> subprocess.CompletedProcess:
    """Run ffmpeg/ffprobe; raise MediaToolError with the useful part of stderr when it fails."""
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise MediaToolError(f"{args[0]} is not installed or not on PATH (apt-get install ffmpeg)") from exc
    except subprocess.TimeoutExpired as exc:
        raise MediaToolError(f"{args[0]} did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise MediaToolError(f"{args[0]} exited {proc.returncode}: {' | '.join(tail) or 'no message'}")
    return proc


def ffprobe_json(path: str | Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """Streams and format of a media file as ffprobe's JSON."""
    proc = run_tool([FFPROBE, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
                    timeout_s)
    return json.loads(proc.stdout or b"{}")


def parse_rate(rate: str | None) -> float | None:
    """ffprobe's "24000/1001" as a float; None for missing or 0/0."""
    if not rate or rate in ("0/0", "N/A"):
        return None
    num, _, den = rate.partition("/")
    try:
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def count_video_frames(path: str | Path, timeout_s: float = 120.0) -> int:
    """Frames in the first video stream, counted from packets (headers can be missing or wrong)."""
    proc = run_tool([FFPROBE, "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                     "stream=nb_read_packets", "-of", "csv=p=0", str(path)], timeout_s)
    text = proc.stdout.decode().strip().strip(",")
    return int(text) if text.isdigit() else 0
