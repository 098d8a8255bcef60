"""Probe each input with ffprobe: streams, duration, frame rate, resolution, audio; reject what cannot be clips."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from ..config import ProbeConfig
from ovi_pl.media.tools import MediaToolError, ffprobe_json, parse_rate
from ..stage import Row, Stage
from .discover import DIRECT_SCHEMES


class ProbeInputs(Stage):
    name: ClassVar[str] = "probe"

    def __init__(self, config: ProbeConfig, download_dir: str):
        self.config = config
        self.download_dir = download_dir

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [self._probe(row) for row in rows]

    def _probe(self, row: Row) -> Row:
        path = self._localize(row)
        row = {**row, "path": path}
        try:
            info = ffprobe_json(path)
        except MediaToolError as exc:
            # Not an error of the pipeline: the file is not media ffmpeg can read (truncated, random bytes).
            return self.reject(row, "unreadable", f"ffprobe cannot read it: {exc}")
        streams: list[dict[str, Any]] = info.get("streams", [])
        video = next((s for s in streams if s.get("codec_type") == "video"
                      and not s.get("disposition", {}).get("attached_pic")), None)
        audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
        duration = _float(info.get("format", {}).get("duration")) or _float((video or {}).get("duration")) or 0.0
        probe: dict[str, Any] = {"duration_s": duration, "has_audio": audio is not None,
                                 "format": info.get("format", {}).get("format_name")}
        if video is not None:
            probe.update(width=int(video.get("width") or 0), height=int(video.get("height") or 0),
                         fps=parse_rate(video.get("avg_frame_rate")) or parse_rate(video.get("r_frame_rate")),
                         video_codec=video.get("codec_name"))
        if audio is not None:
            probe.update(audio_codec=audio.get("codec_name"), audio_sample_rate=int(audio.get("sample_rate") or 0),
                         audio_channels=int(audio.get("channels") or 0))
        row["probe"] = probe
        c = self.config
        if video is None:
            kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
            return self.reject(row, "no_video_stream", f"streams found: {', '.join(kinds)}")
        if duration <= 0:
            return self.reject(row, "zero_duration", "ffprobe reports no duration")
        if duration > c.max_duration_s:
            return self.reject(row, "too_long", f"{duration:.0f} s > probe.max_duration_s {c.max_duration_s:.0f}")
        w, h = probe["width"], probe["height"]
        if min(w, h) < c.min_side or max(w, h) > c.max_side:
            return self.reject(row, "absurd_resolution",
                               f"{w}x{h} is outside probe.min_side {c.min_side} .. probe.max_side {c.max_side}")
        if not probe["fps"]:
            return self.reject(row, "no_frame_rate", "the video stream declares no frame rate")
        if c.require_audio and audio is None:
            return self.reject(row, "no_audio_stream", "video without an audio track (probe.require_audio)")
        return self.with_scores(row, area=float(w * h))

    def _localize(self, row: Row) -> str:
        """A path ffmpeg and OpenCV can open: local files as they are, fsspec URLs copied to local disk."""
        uri = row["uri"]
        if "://" not in uri or uri.startswith(DIRECT_SCHEMES):
            return uri
        import fsspec

        target = Path(self.download_dir) / f"{row['input_id']}{Path(uri.split('://', 1)[1]).suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            with fsspec.open(uri, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            tmp.replace(target)
        return str(target)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
