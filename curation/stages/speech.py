"""Speech stages: voice activity (silero-vad), transcription (faster-whisper or whisperx), and audio-only
segments for the audio tower.

- `VoiceActivityStage` (main env): `row["speech_spans"]` [(start_s, end_s)], score `speech_fraction`.
- `TranscribeStage`: `row["transcript"]`, a dict that validates as data_specs' Transcript (language,
  words with times/speakers/scores, segments). Backend faster_whisper runs in the main environment;
  whisperx (batched decoding + wav2vec2 alignment + pyannote diarization) runs its actors in the
  environment `speech.asr.environment` names (default "models": `.venv-models`). Clips without speech are not transcribed.
- `AudioSegmentsStage`: the input row back (with `num_audio_segments`) plus one row per speech or sound
  segment (<= 12 s) of the whole source's audio, with its 16 kHz mono flac written to the work dir:
  the `audio_only` kind of data_specs, packaged by `PackageSamples` with `audio_only_sample_json`.
Models come from local directories only; nothing is downloaded.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import AsrConfig, AudioSegmentsConfig, VadConfig
from ..records import AudioSegmentRow
from ..stage import Resources, Row, Stage

if TYPE_CHECKING:
    import numpy as np

    from ..speech.segments import AudioSegment

def vad_settings(config: VadConfig) -> Any:
    """The plain-dataclass settings `VoiceActivity` takes."""
    from ..speech.vad import VadSettings

    return VadSettings(config.threshold, config.min_speech_ms, config.min_silence_ms, config.speech_pad_ms)


def asr_settings(config: AsrConfig) -> Any:
    """The plain-dataclass settings the ASR worker uses (`.venv-models` has no pydantic)."""
    from ..speech.asr import AsrSettings

    return AsrSettings(backend=config.backend, model_dir=str(config.model_dir or ""), device=config.device,
                       compute_type=config.compute_type, language=config.language, batch_size=config.batch_size,
                       beam_size=config.beam_size, threads=config.threads,
                       align_model_dir=str(config.align_model_dir) if config.align_model_dir else None,
                       diarize_model=str(config.diarize_model) if config.diarize_model else None,
                       min_speakers=config.min_speakers, max_speakers=config.max_speakers,
                       max_new_tokens=config.max_new_tokens)


def _audio_path(row: Row) -> str:
    path = row.get("flac_path") or row.get("audio_path") or row.get("mp4_path") or row.get("path")
    if not path:
        raise KeyError("row has none of flac_path, audio_path, mp4_path, path: nothing to read audio from")
    return str(path)


class VoiceActivityStage(Stage):
    name: ClassVar[str] = "vad"

    def __init__(self, config: VadConfig):
        self.settings = vad_settings(config)
        self._vad: Any = None

    def setup(self) -> None:
        from ..speech.vad import VoiceActivity

        if self._vad is None:
            self._vad = VoiceActivity(self.settings)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ovi_pl.media.audio import load_audio
        from ..speech.vad import speech_fraction

        self.setup()
        out = []
        for row in rows:
            audio = load_audio(_audio_path(row))
            spans = [(round(a, 3), round(b, 3)) for a, b in self._vad.spans(audio)]
            fraction = round(speech_fraction(spans, len(audio) / 16000), 4)
            out.append(self.with_scores({**row, "speech_spans": spans}, speech_fraction=fraction))
        return out


class TranscribeStage(Stage):
    name: ClassVar[str] = "asr"
    takes_audio_only: ClassVar[bool] = True

    def __init__(self, config: AsrConfig):
        self.config = config  # what the stage is rebuilt from in a worker of another environment (runner.py)
        self.settings = asr_settings(config)
        env = config.environment if config.backend == "whisperx" else "main"
        self.resources = Resources(cpus=float(config.threads), gpus=config.gpus_per_actor,  # type: ignore[misc]
                                   actors=config.actors, environment=env)
        self.batch_size = 4  # type: ignore[misc]
        self._asr: Any = None

    def setup(self) -> None:
        from ..speech.asr import load_asr

        if self._asr is None:
            self._asr = load_asr(self.settings)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ..speech.asr import normalise
        from ovi_pl.media.audio import load_audio

        self.setup()
        out = []
        for row in rows:
            if row.get("speech_spans") == []:  # VAD ran and heard nobody: nothing to transcribe
                out.append({**row, "transcript": None})
                continue
            audio = load_audio(_audio_path(row))
            transcript = normalise(self._asr.transcribe(audio), duration_s=len(audio) / 16000)
            out.append({**row, "transcript": validated(transcript)})
        return out


def validated(transcript: dict) -> dict:
    """The transcript checked against data_specs' Transcript model (sorted, ordered times, ISO language)."""
    from data_specs import Transcript

    return Transcript.model_validate(transcript).model_dump(mode="json")


class AudioSegmentsStage(Stage):
    """One input row -> the input row plus rows of audio-only segments cut from the whole source's
    audio: speech (VAD spans joined across short pauses) and sound (the stretches between), each at
    most `max_s`, their flac written.

    It runs before the clip fan-out, so segments follow the source's speech, not clip boundaries,
    and reach the 12 s the audio tower takes. The input row comes back with `num_audio_segments`
    (kept and rejected segments alike), which the clips cut from it carry; the driver waits for that
    many segment rows before it marks the input done. Segment rows (`record_type="audio_clip"`) pass
    around the video stages; transcription and captions serve them, and `PackageSamples` captions them
    with their own words in <S>..<E> and the audio description of their caption (the captioner's, or
    the source's from the inputs manifest).
    """

    name: ClassVar[str] = "audio_segments"
    fans_out: ClassVar[bool] = True

    def __init__(self, config: AudioSegmentsConfig, vad: VadConfig, work_dir: str):
        self.config = config
        self.vad_settings = vad_settings(vad)
        self.work_dir = work_dir
        self._vad: Any = None

    def setup(self) -> None:
        from ..speech.vad import VoiceActivity

        if self._vad is None:
            self._vad = VoiceActivity(self.vad_settings)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ..keys import audio_segment_key
        from ovi_pl.media.audio import save_flac
        from ..speech.segments import plan_segments
        from .volume import mean_volume_db

        c = self.config
        self.setup()
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        out: list[Row] = []
        for row in rows:
            path = _audio_path(row)
            spans, duration_s = self._vad.spans_in_file(path, c.decode_window_s)
            plans = [p for p in plan_segments(spans, duration_s, c.max_s, c.min_speech_s, c.min_sound_s,
                                              c.merge_gap_s) if p.kind in c.kinds]
            children: list[Row] = []
            for i, (seg, piece) in enumerate(_segment_audio(path, plans, c.decode_window_s)):
                duration = round(len(piece) / 16000, 4)
                db = round(mean_volume_db(piece), 3)
                speech = [(round(max(a, seg.start_s) - seg.start_s, 3), round(min(b, seg.end_s) - seg.start_s, 3))
                          for a, b in spans if b > seg.start_s and a < seg.end_s] if seg.kind == "speech" else []
                inherited = {k: v for k, v in row.items() if k != "num_audio_segments"}
                child: AudioSegmentRow = {
                    **inherited, "key": audio_segment_key(row["uri"], i), "record_type": "audio_clip",
                    "kind": "audio_only", "parent_key": row["input_id"], "segment_kind": seg.kind,
                    "start_s": seg.start_s, "end_s": round(seg.start_s + duration, 3), "duration_s": duration,
                    "speech_spans": speech, "scores": {}}
                if db < c.min_mean_volume_db:
                    children.append(self.reject(child, "low_volume", f"segment mean volume {db:.1f} dB < "
                                                f"speech.audio_segments.min_mean_volume_db {c.min_mean_volume_db}",
                                                mean_volume_db=db))
                    continue
                flac = save_flac(Path(self.work_dir) / f"{child['key']}.flac", piece)
                children.append(self.with_scores({**child, "flac_path": str(flac)}, mean_volume_db=db))
            out.append({**row, "num_audio_segments": len(children)})
            out += children
        return out


def _segment_audio(path: str, plans: list[AudioSegment], window_s: float) -> Iterator[tuple[AudioSegment, np.ndarray]]:
    """Each planned segment (sorted, disjoint) with its 16 kHz samples, reading the source in stretches
    of at most `window_s` that hold whole segments."""
    from ovi_pl.media.audio import load_audio

    group: list[AudioSegment] = []
    for seg in [*plans, None]:
        if group and (seg is None or seg.end_s - group[0].start_s > window_s):
            start_s = group[0].start_s
            audio = load_audio(path, start_s=start_s, duration_s=group[-1].end_s - start_s)
            for planned in group:
                first, end = round((planned.start_s - start_s) * 16000), round((planned.end_s - start_s) * 16000)
                yield planned, audio[first:end]
            group = []
        if seg is not None:
            group.append(seg)


def segment_caption(caption: str | None, transcript: dict | None) -> str:
    """An audio_only caption: the segment's spoken words in <S>..<E>, then the audio description of
    `caption` (the captioner's for this segment, or the source's from the inputs manifest) in its own
    style (`<AUDCAP>..<ENDAUDCAP>` or `Audio: ..`). "" when `caption` has no audio description."""
    import re

    from data_specs.captions import _SPEECH_SPAN_RE, caption_style

    caption = caption or ""
    style = caption_style(caption)
    if style == "audcap":
        match = re.search(r"<AUDCAP>(.*?)<ENDAUDCAP>", caption, re.DOTALL)
        description = match.group(1).strip() if match else ""
    elif style == "audio_prefix":
        outside = _SPEECH_SPAN_RE.sub(lambda m: " " * len(m.group()), caption)
        description = caption[outside.rindex("Audio:") + len("Audio:"):].strip()
    else:
        return ""
    if not description:
        return ""
    words = [str(w["word"]).strip() for w in (transcript or {}).get("words", []) if str(w["word"]).strip()]
    if not words:
        words = [str(s["text"]).strip() for s in (transcript or {}).get("segments", []) if str(s["text"]).strip()]
    spoken = " ".join(words).replace("<", "").replace(">", "").strip()
    speech = f"<S>{spoken}<E> " if spoken else ""
    audio = f"<AUDCAP>{description}<ENDAUDCAP>" if style == "audcap" else f"Audio: {description}"
    return speech + audio


def audio_only_sample_json(row: Row, caption: str, transcript: dict | None = None) -> dict:
    """The `.json` member of an audio-only segment row (data_specs kind audio_only), validated."""
    from data_specs import SCHEMA_VERSION, parse_sample_meta

    meta = {"schema_version": SCHEMA_VERSION, "key": row["key"], "kind": "audio_only",
            "source": {"uri": row.get("uri") or row.get("path") or row["key"], "start_s": row["start_s"],
                       "end_s": row["end_s"]},
            "media": {"duration_s": row["duration_s"], "audio": {"sample_rate": 16000, "channels": 1}},
            "caption": caption, "scores": {k: float(v) for k, v in sorted(row.get("scores", {}).items())}}
    if transcript is not None:
        meta["transcript"] = transcript
    parse_sample_meta(meta, source=f"audio segment {row['key']}")
    return meta


__all__ = ["AsrConfig", "AudioSegmentsConfig", "AudioSegmentsStage", "SpeechConfig", "TranscribeStage", "VadConfig",
           "VoiceActivityStage", "audio_only_sample_json", "segment_caption", "validated"]
