"""Build each kept sample's `.json` member and validate it with data_specs before anything is written.

Clips (`record_type="clip"`) become `audio_video` samples; audio-only segments (`record_type=
"audio_clip"`, from the audio_segments stage) become `audio_only` samples via
`audio_only_sample_json`, captioned by `segment_caption`: their own words, then the audio
description of their caption (the captioner's, or the source's from the inputs manifest).

data_specs schema 1.0 requires a tagged caption. It comes from the captioning stage or from the
inputs manifest (`{"path": ..., "caption": ...}`); a clip with neither is rejected here as
`uncaptioned` rather than written with an invented caption.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from data_specs import SCHEMA_VERSION, SampleMetaError, parse_sample_meta

from ..config import ClipConfig
from ..stage import Row, Stage
from .speech import audio_only_sample_json, segment_caption


def sample_json(row: Row, clip: ClipConfig) -> dict:
    probe, video = row["probe"], row["video"]
    return {
        "schema_version": SCHEMA_VERSION,
        "key": row["key"],
        "kind": "audio_video",
        "source": {"uri": row["uri"], "start_s": row["start_s"], "end_s": row["end_s"],
                   "fps": probe.get("fps"), "width": probe.get("width"), "height": probe.get("height")},
        "media": {"duration_s": round(video["num_frames"] / clip.fps, 6),
                  "video": {"fps": clip.fps, "num_frames": video["num_frames"], "width": video["width"],
                            "height": video["height"]},
                  "audio": {"sample_rate": clip.audio_sample_rate, "channels": 1}},
        "caption": row.get("caption", ""),
        **({"transcript": row["transcript"]} if row.get("transcript") else {}),
        "scores": {k: float(v) for k, v in sorted(row.get("scores", {}).items())},
    }


class PackageSamples(Stage):
    name: ClassVar[str] = "package"
    takes_audio_only: ClassVar[bool] = True

    def __init__(self, clip: ClipConfig):
        self.clip = clip

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            if row.get("frames_path"):
                # No stage after this one reads frames, and the frame cache is no shard member.
                Path(row["frames_path"]).unlink(missing_ok=True)
            if row.get("record_type") == "audio_clip":
                row = {**row, "caption": segment_caption(row.get("caption"), row.get("transcript"))}
            if not (row.get("caption") or "").strip():
                out.append(self.reject(row, "uncaptioned", f"data_specs {SCHEMA_VERSION} requires a tagged caption; "
                                       "enable captions or give one in the inputs manifest"))
                continue
            try:
                if row.get("record_type") == "audio_clip":
                    meta = audio_only_sample_json(row, row["caption"], row.get("transcript") or None)
                else:
                    meta = sample_json(row, self.clip)
                    parse_sample_meta(meta, source=f"clip {row['key']}")
            except SampleMetaError as exc:
                out.append(self.reject(row, "invalid_sample", "; ".join(exc.problems)))
                continue
            out.append({**row, "sample_json": json.dumps(meta, sort_keys=True)})
        return out
