"""Voice activity with silero-vad, from the model file the package ships (no download)."""
from __future__ import annotations

from dataclasses import dataclass

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


def speech_fraction(spans: list[tuple[float, float]], duration_s: float) -> float:
    """Share of the clip covered by speech, 0..1."""
    if duration_s <= 0:
        return 0.0
    return min(1.0, sum(e - s for s, e in spans) / duration_s)
