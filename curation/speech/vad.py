"""Voice activity with silero-vad, from the model file the package ships (no download)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30


class VoiceActivity:
    """Holds the silero model; `spans(audio)` gives speech (start_s, end_s) pairs."""

    def __init__(self, settings: VadSettings = VadSettings()):
        from silero_vad import load_silero_vad

        self.settings = settings
        self.model = load_silero_vad()

    def spans(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
        import torch
        from silero_vad import get_speech_timestamps

        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"silero-vad runs at {SAMPLE_RATE} Hz here; got {sample_rate} Hz audio")
        if len(audio) < 512:
            return []
        s = self.settings
        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), self.model,
                                       threshold=s.threshold, sampling_rate=sample_rate,
                                       min_speech_duration_ms=s.min_speech_ms, min_silence_duration_ms=s.min_silence_ms,
                                       speech_pad_ms=s.speech_pad_ms)
        return [(t["start"] / sample_rate, t["end"] / sample_rate) for t in stamps]

    def spans_in_file(self, path: str | Path, window_s: float) -> tuple[list[tuple[float, float]], float]:
        """Speech spans of a whole recording and its duration in seconds, decoding `window_s` at a time.

        Speech that runs over a window's edge comes back from the two windows as a span ending at the
        edge and one starting there; those two are joined, as one pass over the whole file would give.
        """
        from ovi_pl.media.audio import iter_audio_windows

        # silero scores 512-sample frames and pads spans by speech_pad_ms: "at the edge" within both
        edge_s = 512 / SAMPLE_RATE + self.settings.speech_pad_ms / 1000
        spans: list[tuple[float, float]] = []
        duration_s = 0.0
        for start_s, audio in iter_audio_windows(path, window_s, SAMPLE_RATE):
            for i, (a, b) in enumerate(self.spans(audio)):
                a, b = start_s + a, start_s + b
                if i == 0 and spans and spans[-1][1] >= start_s - edge_s and a <= start_s + edge_s:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
            duration_s = start_s + len(audio) / SAMPLE_RATE
        return spans, duration_s


def speech_fraction(spans: list[tuple[float, float]], duration_s: float) -> float:
    """Share of the clip covered by speech, 0..1."""
    if duration_s <= 0:
        return 0.0
    return min(1.0, sum(e - s for s, e in spans) / duration_s)
