"""Mono float32 audio in [-1, 1], by one of two backends:

- `load_audio` (ffmpeg in a subprocess): any file ffmpeg reads (flac, wav, a video's track), resampled to
  the rate asked, a stretch of it at a time (`iter_audio_windows`) for long sources. For files.
- `decode_audio` (in this process): a clip's audio from bytes in memory (a shard member) or a short
  file, FLAC/WAV with soundfile and other containers (mp4) with PyAV, aligned with the video the way
  `ovi_pl.media.av_clip.read_video` reads it, cut or padded to a length. For members and aligned clips.
"""
from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .av_clip import Source


class NoAudio(RuntimeError):
    """The file (or the stretch asked for) has no audio samples."""


def load_audio(path: str | Path, sample_rate: int = 16000, start_s: float | None = None,
               duration_s: float | None = None, timeout_s: float = 300.0) -> np.ndarray:
    """Samples in [-1, 1]; an input without an audio stream raises, naming the file."""
    args = ["ffmpeg", "-v", "error", "-nostdin"]
    if start_s:
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", str(path)]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    # aresample pads silence where the audio starts after time 0 (a container offset, the kind of
    # desync a sync judge must see); raw output would otherwise drop the gap and pull the sound early.
    args += ["-vn", "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise RuntimeError("ffmpeg is not installed or not on PATH (apt-get install ffmpeg)") from exc
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-2:])
        raise RuntimeError(f"cannot read audio from {path}: {tail or 'ffmpeg failed'}")
    if not proc.stdout:
        raise NoAudio(f"{path} has no audio stream (or it is empty)")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def iter_audio_windows(path: str | Path, window_s: float,
                       sample_rate: int = 16000) -> Iterator[tuple[float, np.ndarray]]:
    """(start_s, samples) of consecutive `window_s` stretches of the file, the last one shorter, so a
    long recording is never in memory whole."""
    start = 0.0
    while True:
        try:
            audio = load_audio(path, sample_rate, start_s=start, duration_s=window_s)
        except NoAudio:
            if start == 0:
                raise
            return  # the previous window ended exactly at the end of the file
        yield start, audio
        if len(audio) < round(window_s * sample_rate):
            return
        start += window_s


def decode_audio(source: Source, sample_rate: int | None = 16000, start_s: float = 0.0,
                 duration_s: float | None = None, max_pad_s: float = 0.1, name: str | None = None) -> np.ndarray:
    """Mono float32 samples of a path or of bytes, decoded in this process.

    FLAC and WAV (told by their first bytes) are read by soundfile as stored: their rate must be
    `sample_rate` (ValueError otherwise; `load_audio` resamples). Any other container's first audio
    track is decoded by PyAV and resampled by libswresample; a track that starts late is led by silence,
    so sample 0 is time 0 of the file, as for the video. `sample_rate` None keeps the stored rate.

    duration_s: that many seconds from start_s, zero-padded by at most max_pad_s where the audio ends
    early (containers often end it a few ms before the video; ValueError beyond); None: to the end (for
    a container, the stream's stated duration, which leaves out AAC priming and padding).
    """
    from .av_clip import describe

    what = describe(source, name)
    head = bytes(source[:12]) if isinstance(source, (bytes, bytearray, memoryview)) else _head(source)
    if head[:4] == b"fLaC" or (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        samples, rate = _read_soundfile(source, sample_rate, what)
    else:
        samples, rate, stated_s = _read_track(source, sample_rate, what)
        if duration_s is None and stated_s is not None:
            duration_s = max(0.0, stated_s - start_s)
    begin = round(start_s * rate)
    if duration_s is None:
        clip = samples[begin:]
    else:
        wanted = round(duration_s * rate)
        clip = samples[begin:begin + wanted]
        missing = wanted - clip.shape[0]
        if missing > max_pad_s * rate:
            raise ValueError(f"{what}: the audio ends {missing / rate:.3f} s before the {wanted / rate:g} s "
                             f"asked for from {start_s:g} s")
        if missing > 0:
            clip = np.concatenate([clip, np.zeros(missing, dtype=np.float32)])
    return np.clip(np.ascontiguousarray(clip, dtype=np.float32), -1.0, 1.0)


def _head(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read(12)


def _read_soundfile(source: Source, sample_rate: int | None, what: str) -> tuple[np.ndarray, int]:
    import soundfile

    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    samples, rate = soundfile.read(data, dtype="float32", always_2d=True)
    if sample_rate is not None and rate != sample_rate:
        raise ValueError(f"{what} is {rate} Hz audio, {sample_rate} Hz needed (FLAC and WAV are not resampled here)")
    return samples.mean(axis=1), rate


def _read_track(source: Source, sample_rate: int | None, what: str) -> tuple[np.ndarray, int, float | None]:
    """All samples of the first audio track from time 0, the rate, and the track's stated duration."""
    import av

    from .av_clip import open_container, stream_seconds

    with open_container(source) as container:
        if not container.streams.audio:
            raise ValueError(f"{what} has no audio stream")
        stream = container.streams.audio[0]
        rate = sample_rate or stream.rate
        try:
            stated: float | None = stream_seconds(stream, container)
        except ValueError:
            stated = None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time or 0.0)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if first_time is None:
        raise ValueError(f"{what}: the audio stream holds no samples")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    lead = round(first_time * rate)  # a stream that starts late: silence first, so index 0 is time 0
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, dtype=np.float32), samples])
    return samples, rate, stated


def save_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), sample_rate, subtype="PCM_16")
    return Path(path)


def save_flac(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), sample_rate, format="FLAC", subtype="PCM_16")
    return Path(path)
