"""Checks on member bytes: `.npy` arrays against their declaration, media headers against the json.

Only headers are read (no decoding of frames or samples), so validating a shard stays cheap.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from .sample import AudioInfo, LatentMember, VideoInfo

# One video frame of slack between the json's duration and an audio member's length.
_AUDIO_DURATION_TOLERANCE_S = 1.0 / 24


def check_npy(name: str, data: bytes, declared: LatentMember | None) -> list[str]:
    """Problems loading a `.npy` member without pickle, or with its dtype/shape against the json."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle; numpy says so in a ValueError
        return [f"member .{name} does not load with numpy.load(allow_pickle=False): {exc}; "
                "save plain numeric arrays with numpy.save"]
    except Exception as exc:  # truncated or not .npy at all
        return [f"member .{name} is not a readable .npy file: {exc}"]
    if not isinstance(array, np.ndarray):
        return [f"member .{name} holds {type(array).__name__}, not a single array (.npz is not allowed)"]
    if declared is None:
        return []
    problems = []
    if array.dtype != np.dtype(declared.dtype):
        problems.append(f"member .{name} has dtype {array.dtype}, the json declares {declared.dtype}")
    if list(array.shape) != declared.shape:
        problems.append(f"member .{name} has shape {list(array.shape)}, the json declares {declared.shape}")
    return problems


def check_mp4(data: bytes, video: VideoInfo | None, need_audio_track: bool) -> list[str]:
    """Problems with an `.mp4` member's container, or its video stream against `media.video`."""
    if data[4:8] != b"ftyp":
        return ["member .mp4 is not an MP4 file (no 'ftyp' box at its start)"]
    import av  # imported here: only shards with video pay for it

    try:
        with av.open(io.BytesIO(data)) as container:
            streams = container.streams
            if not streams.video:
                return ["member .mp4 has no video stream"]
            stream = streams.video[0]
            width, height, rate, frames = stream.width, stream.height, stream.average_rate, stream.frames
            has_audio = bool(streams.audio)
    except av.FFmpegError as exc:
        return [f"member .mp4 does not open: {exc}"]
    problems = []
    if need_audio_track and not has_audio:
        problems.append("member .mp4 has no audio stream and the sample has no .flac/.wav member: "
                        "an audio_video sample needs audio from one of them")
    if video is None:
        return problems
    if (width, height) != (video.width, video.height):
        problems.append(f"member .mp4 is {width}x{height}, the json says {video.width}x{video.height}")
    if rate is not None and Fraction(rate) != video.fps:
        problems.append(f"member .mp4 runs at {float(rate):g} fps, the json says {video.fps}")
    if frames and frames != video.num_frames:  # 0 means the container does not say
        problems.append(f"member .mp4 has {frames} frames, the json says {video.num_frames}")
    return problems


def check_audio(ext: str, data: bytes, audio: AudioInfo | None, duration_s: float | None) -> list[str]:
    """Problems with a `.flac`/`.wav` member's header, or against `media.audio` and `media.duration_s`."""
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except RuntimeError as exc:  # soundfile's LibsndfileError is a RuntimeError
        return [f"member .{ext} is not a readable {ext.upper()} file: {exc}"]
    if info.format.lower() != ext:
        return [f"member .{ext} holds {info.format} audio; name the member after its format"]
    problems = []
    if audio is not None:
        if info.samplerate != audio.sample_rate:
            problems.append(f"member .{ext} is {info.samplerate} Hz, the json says {audio.sample_rate} Hz; "
                            "resample during curation")
        if info.channels != audio.channels:
            problems.append(f"member .{ext} has {info.channels} channels, the json says {audio.channels}")
    if duration_s is not None and info.samplerate:
        seconds = info.frames / info.samplerate
        if abs(seconds - duration_s) > _AUDIO_DURATION_TOLERANCE_S:
            problems.append(f"member .{ext} lasts {seconds:.3f} s, the json says media.duration_s {duration_s}")
    return problems
