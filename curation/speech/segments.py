"""Cutting a recording into audio-only training segments (audio tower): speech and sound, each <= 12 s."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AudioSegment:
    start_s: float
    end_s: float
    kind: Literal["speech", "sound"]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _split(start: float, end: float, max_s: float) -> list[tuple[float, float]]:
    """Equal pieces no longer than max_s (equal, so no useless short tail)."""
    count = max(1, int(-(-(end - start) // max_s)))
    step = (end - start) / count
    return [(start + i * step, start + (i + 1) * step) for i in range(count)]


def plan_segments(speech: list[tuple[float, float]], duration_s: float, max_s: float = 12.0,
                  min_speech_s: float = 1.0, min_sound_s: float = 2.0, merge_gap_s: float = 0.6,
                  guard_s: float = 0.25) -> list[AudioSegment]:
    """Speech segments: VAD spans joined across short pauses while they fit in max_s; longer ones split.
    Sound segments: the stretches between speech (kept `guard_s` away from it) of at least min_sound_s."""
    merged: list[list[float]] = []
    for start, end in sorted(speech):
        if merged and start - merged[-1][1] <= merge_gap_s and end - merged[-1][0] <= max_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[AudioSegment] = []
    for start, end in merged:
        for a, b in _split(start, min(end, duration_s), max_s):
            if b - a >= min_speech_s:
                out.append(AudioSegment(round(a, 3), round(b, 3), "speech"))
    cursor = 0.0
    for start, end in merged + [[duration_s + guard_s, duration_s + guard_s]]:
        gap_start, gap_end = cursor + (guard_s if cursor > 0 else 0.0), min(start - guard_s, duration_s)
        if gap_end - gap_start >= min_sound_s:
            for a, b in _split(gap_start, gap_end, max_s):
                if b - a >= min_sound_s:
                    out.append(AudioSegment(round(a, 3), round(b, 3), "sound"))
        cursor = max(cursor, end)
    return sorted(out, key=lambda s: s.start_s)
