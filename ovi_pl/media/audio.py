"""Mono float32 audio at a chosen rate from any file ffmpeg reads (flac, wav, or a video's track)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np


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
    args += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
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


def save_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), sample_rate, subtype="PCM_16")
    return Path(path)


def save_flac(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), sample_rate, format="FLAC", subtype="PCM_16")
    return Path(path)
