"""The rows that travel through a curation pipeline, typed: what each field means and which stage sets it.

Rows stay plain dicts at run time (they cross Ray as pickled dicts, and a stage returns an updated copy);
these TypedDicts are their documentation and what type checkers hold the stages to. Every row can carry
the verdict fields of `Verdict`.
"""
from __future__ import annotations

from typing import Any, Literal, TypedDict


class Verdict(TypedDict, total=False):
    status: Literal["kept", "rejected", "quarantined"]
    rejected_by: str                 # the stage that rejected or quarantined the row
    reason: str                      # snake_case code the report counts by
    detail: str                      # what was found and the threshold, for a person reading the manifest
    error_type: str                  # quarantined rows: the exception's type and message
    error: str
    scores: dict[str, float]         # recorded for kept and rejected rows alike; the shard json's `scores`
    stage_time: list[list[Any]]      # [stage, worker seconds, rows] shares, set by the Stage base class


class InputRow(Verdict, total=False):
    """One named input (discover), then its probe result (probe)."""

    record_type: Literal["input"]
    input_id: str                    # hash of the name's bytes: the completion marker's name
    uri: str                         # the name the user gave, printable (non-UTF-8 bytes as \\xNN)
    location: str                    # the name as the file system has it (what ffmpeg opens)
    caption: str                     # from the inputs manifest
    path: str                        # probe: a local file ffmpeg can read (remote inputs are copied)
    probe: dict[str, Any]            # probe: duration_s, width, height, fps, has_audio, codecs
    num_audio_segments: int          # audio_segments: segment rows announced for this input


class ClipRow(InputRow, total=False):
    """One clip cut from an input (scenes), transcoded and judged by the later stages."""

    record_type: Literal["clip"]     # type: ignore[misc]  # narrows InputRow's
    key: str                         # WebDataset key (keys.clip_key)
    clip_index: int
    num_clips: int                   # clips cut from the input: the driver waits for all of them
    scene_index: int
    num_scenes: int
    start_s: float                   # clip span in the source
    end_s: float
    mp4_path: str                    # transcode: work files
    flac_path: str
    frames_path: str                 # transcode: the frame cache (ovi_pl.media.frames.frame_source)
    video: dict[str, int]            # transcode: width, height, num_frames
    speech_spans: list[tuple[float, float]]   # vad
    transcript: dict[str, Any] | None         # asr: data_specs.Transcript
    syncnet_tracks: list[dict[str, Any]]      # syncnet
    sync_method: Literal["syncnet", "mouth", "onset", "none"]   # which judge decided the sync
    sync_verified: bool              # that judge's confidence cleared its gate
    sample_json: str                 # package: the shard's .json member


class AudioSegmentRow(InputRow, total=False):
    """An audio-only segment of an input's audio (audio_segments), for the audio tower."""

    record_type: Literal["audio_clip"]   # type: ignore[misc]
    kind: Literal["audio_only"]
    key: str                         # keys.audio_segment_key
    parent_key: str                  # the input's id
    segment_kind: Literal["speech", "sound"]
    start_s: float
    end_s: float
    duration_s: float
    speech_spans: list[tuple[float, float]]
    flac_path: str
    transcript: dict[str, Any] | None
    sample_json: str
