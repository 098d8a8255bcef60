"""Speech recognition from local model directories: faster-whisper alone (main environment) or whisperx
(batched faster-whisper + wav2vec2 word alignment + pyannote diarization, `.venv-models`).

Settings are a plain dataclass and results plain dicts shaped like data_specs' Transcript
(`language`, `segments` [{text, start_s, end_s, speaker}], `words` [{word, start_s, end_s, speaker,
score}]), because this module must import in `.venv-models`, which has no pydantic.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AsrSettings:
    backend: Literal["faster_whisper", "whisperx"] = "faster_whisper"
    model_dir: str = ""                    # ctranslate2 Whisper directory (model.bin, config.json, tokenizer.json)
    device: str = "cpu"
    compute_type: str = "float32"
    language: str | None = None            # None: detect per clip
    batch_size: int = 8                    # whisperx batched decoding
    beam_size: int = 5
    threads: int = 1
    max_new_tokens: int | None = None      # cap per 30 s window; None: Whisper's own limit
    align_model_dir: str | None = None     # Wav2Vec2ForCTC + processor directory; None: no word alignment
    diarize_model: str | None = None       # pyannote pipeline dir (config.yaml + its models); None: no diarization
    min_speakers: int | None = None
    max_speakers: int | None = None
    vad_onset: float = 0.5                 # whisperx's pyannote VAD (the segmentation model whisperx ships)
    vad_offset: float = 0.363


def local_model_problems(settings: AsrSettings) -> list[str]:
    """What is wrong with the local model paths the settings name (empty: all there). Checked when the
    config loads, before any work, and again by the workers that load the models."""
    problems = []
    required = [("model_dir", settings.model_dir, "a ctranslate2 Whisper directory (model.bin, config.json, "
                 "tokenizer.json), e.g. faster-whisper-large-v3")]
    optional = [("align_model_dir", settings.align_model_dir, "a Wav2Vec2ForCTC directory with its processor"),
                ("diarize_model", settings.diarize_model, "a pyannote pipeline directory")]
    for name, path, what in required + [o for o in optional if o[1]]:
        if not path:
            problems.append(f"speech.asr.{name} is not set: give {what} (nothing is downloaded)")
        elif not Path(path).exists():
            problems.append(f"speech.asr.{name}: {path} does not exist; give {what}")
    pipeline = Path(settings.diarize_model or "")
    if settings.diarize_model and pipeline.is_dir() and not (pipeline / "config.yaml").is_file():
        problems.append(f"speech.asr.diarize_model: {pipeline} has no config.yaml; give a local copy of a pyannote "
                        "pipeline, e.g. `hf download pyannote/speaker-diarization-community-1 --local-dir <dir>` "
                        "(config.yaml with its segmentation/, embedding/ and plda/ folders)")
    return problems


def _empty(language: str | None) -> dict[str, Any]:
    return {"language": language or "en", "segments": [], "words": []}


class FasterWhisperAsr:
    """Plain faster-whisper: segments and word times from Whisper's cross-attention, no diarization."""

    def __init__(self, settings: AsrSettings):
        from faster_whisper import WhisperModel

        self.settings = settings
        self.model = WhisperModel(settings.model_dir, device=settings.device, compute_type=settings.compute_type,
                                  cpu_threads=settings.threads, local_files_only=True)

    def transcribe(self, audio: np.ndarray) -> dict[str, Any]:
        s = self.settings
        segments, info = self.model.transcribe(np.asarray(audio, np.float32), language=s.language,
                                               beam_size=s.beam_size, word_timestamps=True,
                                               condition_on_previous_text=False,
                                               max_new_tokens=s.max_new_tokens)
        out = _empty(info.language)
        for seg in segments:
            out["segments"].append({"text": seg.text.strip(), "start_s": float(seg.start), "end_s": float(seg.end),
                                    "speaker": None})
            for w in seg.words or []:
                if w.word.strip():
                    out["words"].append({"word": w.word.strip(), "start_s": float(w.start), "end_s": float(w.end),
                                         "speaker": None, "score": float(w.probability)})
        return normalise(out)


class WhisperXAsr:
    """whisperx: batched transcription, then optional wav2vec2 alignment and pyannote diarization."""

    def __init__(self, settings: AsrSettings):
        # pyannote.audio 4 sends usage traces (file durations, speaker counts) to pyannote.ai unless
        # told not to; curated footage stays private unless the user sets PYANNOTE_METRICS_ENABLED=1.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        import whisperx

        self.settings = settings
        s = settings
        # English-only checkpoints cannot detect a language (ctranslate2 raises); they speak English.
        import ctranslate2

        language = s.language or (None if ctranslate2.models.Whisper(s.model_dir, device="cpu").is_multilingual
                                  else "en")
        self.language = language
        self.model = whisperx.load_model(s.model_dir, s.device, compute_type=s.compute_type, language=language,
                                         vad_method="pyannote", threads=s.threads, local_files_only=True,
                                         vad_options={"vad_onset": s.vad_onset, "vad_offset": s.vad_offset},
                                         asr_options={"beam_size": s.beam_size, "best_of": 1, "temperatures": [0.0],
                                                      "max_new_tokens": s.max_new_tokens})
        self.align_dir = s.align_model_dir
        self._aligners: dict[str, tuple[Any, dict]] = {}
        self.diarizer = None
        if s.diarize_model:
            from whisperx.diarize import DiarizationPipeline

            self.diarizer = DiarizationPipeline(s.diarize_model, device=s.device)

    def _aligner(self, language: str) -> tuple[Any, dict]:
        import whisperx

        if language not in self._aligners:
            self._aligners[language] = whisperx.load_align_model(language, self.settings.device,
                                                                 model_name=self.align_dir, model_cache_only=True)
        return self._aligners[language]

    def transcribe(self, audio: np.ndarray) -> dict[str, Any]:
        import whisperx

        s = self.settings
        audio = np.asarray(audio, np.float32)
        result = self.model.transcribe(audio, batch_size=s.batch_size, language=self.language)
        language = result.get("language") or self.language or "en"
        if self.align_dir and result["segments"]:
            model, meta = self._aligner(language)
            with _offline_sentence_splitter():
                result = whisperx.align(result["segments"], model, meta, audio, s.device, return_char_alignments=False)
        if self.diarizer is not None and result["segments"]:
            turns = self.diarizer(audio, min_speakers=s.min_speakers, max_speakers=s.max_speakers)
            result = whisperx.assign_word_speakers(turns, result)
        out = _empty(language)
        for seg in result["segments"]:
            out["segments"].append({"text": str(seg.get("text", "")).strip(), "start_s": float(seg["start"]),
                                    "end_s": float(seg["end"]), "speaker": seg.get("speaker")})
            for w in seg.get("words", []):
                # Words wav2vec2 could not place (digits, symbols) come back without times; drop them.
                if "start" in w and "end" in w and str(w.get("word", "")).strip():
                    out["words"].append({"word": str(w["word"]).strip(), "start_s": float(w["start"]),
                                         "end_s": float(w["end"]), "speaker": w.get("speaker"),
                                         "score": float(w["score"]) if w.get("score") is not None else None})
        return normalise(out)


@contextlib.contextmanager
def _offline_sentence_splitter() -> Iterator[None]:
    """whisperx.align splits sentences with nltk's punkt_tab data and downloads it when missing. Offline,
    without that data, use an untrained Punkt splitter (splits at . ! ?) instead of failing."""
    import nltk
    import whisperx.alignment as alignment

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        yield
        return
    except LookupError:
        pass
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    original = alignment.nltk_load
    alignment.nltk_load = lambda *_a, **_k: PunktSentenceTokenizer()
    try:
        yield
    finally:
        alignment.nltk_load = original


def normalise(transcript: dict[str, Any], duration_s: float | None = None) -> dict[str, Any]:
    """Sorted, non-negative, end >= start, clipped to the clip (data_specs' Transcript rules), rounded to ms."""
    def fix(items: list[dict], text_key: str) -> list[dict]:
        out = []
        for item in items:
            start = max(0.0, float(item["start_s"]))
            end = max(start, float(item["end_s"]))
            if duration_s is not None:
                start, end = min(start, duration_s), min(end, duration_s)
            if text_key == "word" and not str(item[text_key]).strip():
                continue
            out.append({**item, "start_s": round(start, 3), "end_s": round(end, 3)})
        return sorted(out, key=lambda x: x["start_s"])

    language = str(transcript.get("language") or "en").lower()
    return {"language": language, "segments": fix(transcript.get("segments", []), "text"),
            "words": fix(transcript.get("words", []), "word")}


def load_asr(settings: AsrSettings) -> FasterWhisperAsr | WhisperXAsr:
    """The backend the settings name; whisperx needs `.venv-models`."""
    if settings.backend != "whisperx" and (settings.align_model_dir or settings.diarize_model):
        raise ValueError("word alignment and diarization need speech.asr.backend: whisperx (in .venv-models); "
                         "faster_whisper gives Whisper's own word times without speakers")
    problems = local_model_problems(settings)
    if problems:
        raise FileNotFoundError("; ".join(problems))
    return WhisperXAsr(settings) if settings.backend == "whisperx" else FasterWhisperAsr(settings)
