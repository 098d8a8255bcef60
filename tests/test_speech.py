"""Voice activity (silero-vad), ASR (faster-whisper here; whisperx in .venv-models as a subprocess) and
audio-only segments. Whisper and wav2vec2 are tiny random models built offline in their real formats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_MEDIA

from curation.speech.audio import load_audio
from curation.speech.segments import plan_segments
from curation.speech.vad import VoiceActivity
from curation.stages.speech import (AsrConfig, AudioSegmentsConfig, AudioSegmentsStage, TranscribeStage,
                                    VadConfig, VoiceActivityStage, audio_only_sample_json)
from data_specs import Transcript, parse_sample_meta

TESTS = Path(__file__).parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from speech_media import silent_clip, speech_with_silence  # noqa: E402

MEDIA = SHARED_MEDIA
CLIPS = ["kitchen_two_women", "stage_three_men", "two_men_closeup"]


def models_python() -> Path | None:
    """The second environment's interpreter: the repo's .venv-models once `make models-env` finished,
    else OVI_PL_MODELS_PYTHON, else the copy this machine keeps at /tmp/vmodels."""
    candidates = [REPO / ".venv-models/bin/python" if (REPO / ".venv-models/.installed").exists() else None,
                  Path(os.environ["OVI_PL_MODELS_PYTHON"]) if os.environ.get("OVI_PL_MODELS_PYTHON") else None,
                  Path("/tmp/vmodels/bin/python")]
    return next((p for p in candidates if p is not None and p.exists()), None)


MODELS_PYTHON = models_python()
needs_models_env = pytest.mark.skipif(MODELS_PYTHON is None, reason="no .venv-models interpreter: run `make models-env` "
                                      "(or set OVI_PL_MODELS_PYTHON) for the whisperx tests")


def _in_models_env(code: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(MODELS_PYTHON), "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def vad() -> VoiceActivity:
    return VoiceActivity()


@pytest.mark.parametrize("clip", CLIPS)
def test_vad_finds_the_speech_in_real_clips(vad: VoiceActivity, clip: str) -> None:
    spans = vad.spans(load_audio(MEDIA / f"{clip}_704x1280.mp4"))
    assert spans and sum(e - s for s, e in spans) > 1.5, spans


def test_vad_hears_nothing_in_silence_and_finds_espeak(vad: VoiceActivity, tmp_path: Path) -> None:
    assert vad.spans(load_audio(silent_clip(tmp_path / "silent.mp4"))) == []
    wav, start, end = speech_with_silence(tmp_path / "speech.wav", "The quick brown fox jumps over the lazy dog.")
    spans = vad.spans(load_audio(wav))
    assert spans and abs(spans[0][0] - start) < 0.3 and abs(spans[-1][1] - end) < 0.5, (spans, start, end)


def test_vad_stage_records_spans_and_fraction(tmp_path: Path) -> None:
    rows = VoiceActivityStage(VadConfig()).process_batch(
        [{"key": "talk", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4")},
         {"key": "quiet", "mp4_path": str(silent_clip(tmp_path / "silent.mp4"))}])
    assert rows[0]["speech_spans"] and rows[0]["scores"]["speech_fraction"] > 0.3
    assert rows[1]["speech_spans"] == [] and rows[1]["scores"]["speech_fraction"] == 0.0


def test_segment_plan_caps_length_and_separates_sound() -> None:
    plan = plan_segments([(1.0, 4.0), (4.3, 9.0), (9.2, 20.0), (30.0, 31.5)], duration_s=40.0)
    assert all(s.duration_s <= 12.0 + 1e-6 for s in plan)
    speech = [s for s in plan if s.kind == "speech"]
    sound = [s for s in plan if s.kind == "sound"]
    assert speech[0].start_s == 1.0 and any(s.start_s == 30.0 for s in speech)
    assert sum(s.duration_s for s in speech) == pytest.approx(3 + 5 + 10.8 + 1.5, abs=1.0)
    # quiet stretches 20-30 s and 31.5-40 s become sound segments, kept clear of the speech
    assert [(s.start_s >= 20.25, s.end_s <= 29.75) for s in sound][:1] == [(True, True)] and len(sound) == 2


def test_audio_segments_stage_writes_audio_only_samples(tmp_path: Path) -> None:
    wav, _, _ = speech_with_silence(tmp_path / "speech.wav", "Hello there. This is a test of the audio tower.",
                                    lead_s=0.5, tail_s=3.0)
    [row] = VoiceActivityStage(VadConfig()).process_batch([{"key": "rec", "input_id": "rec", "audio_path": str(wav),
                                                            "uri": str(wav)}])
    rows = AudioSegmentsStage(AudioSegmentsConfig(enabled=True, min_sound_s=1.5, min_mean_volume_db=-80), str(tmp_path / "work")
                              ).process_batch([row])
    # the "sound" here is the -60 dB room noise speech_with_silence pads with, hence the lower floor
    kinds = [r["segment_kind"] for r in rows if r.get("status", "kept") == "kept"]
    assert "speech" in kinds and "sound" in kinds
    for r in rows:
        if r.get("status", "kept") != "kept":
            continue
        audio = load_audio(r["flac_path"])
        assert r["duration_s"] <= 12.0 and abs(len(audio) / 16000 - r["duration_s"]) < 0.01
        meta = audio_only_sample_json(r, "<AUDCAP>A synthetic voice speaks.<ENDAUDCAP>")
        assert parse_sample_meta(meta).kind == "audio_only"


def test_asr_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        AsrConfig(model="large-v3")
    with pytest.raises(ValueError, match="model_dir"):
        AsrConfig(enabled=True)
    with pytest.raises(ValueError, match="whisperx"):
        AsrConfig(backend="faster_whisper", align_model_dir="x")
    assert TranscribeStage(AsrConfig(backend="whisperx")).resources.environment == "models"
    assert TranscribeStage(AsrConfig(backend="faster_whisper")).resources.environment == "main"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Whisper (ctranslate2 dir) and wav2vec2 CTC dir, built in .venv-models, whose
    transformers/ctranslate2 pair is the one whisperx is tested with."""
    if MODELS_PYTHON is None:
        pytest.skip("no .venv-models interpreter to build the tiny Whisper with: run `make models-env`")
    root = tmp_path_factory.mktemp("speech_models")
    _in_models_env(f"""
from pathlib import Path
from speech_media import build_tiny_whisper, build_tiny_wav2vec2
build_tiny_whisper(Path({str(root / 'whisper_hf')!r}), Path({str(root / 'whisper_ct2')!r}))
build_tiny_wav2vec2(Path({str(root / 'wav2vec2')!r}))
""")
    return {"whisper": root / "whisper_ct2", "wav2vec2": root / "wav2vec2"}


@needs_models_env
def test_whisperx_transcribes_and_aligns_from_local_dirs(tiny_models: dict[str, Path]) -> None:
    out = _in_models_env(f"""
import json
from curation.speech.asr import AsrSettings, load_asr
from curation.speech.audio import load_audio
asr = load_asr(AsrSettings(backend="whisperx", model_dir={str(tiny_models['whisper'])!r},
                           align_model_dir={str(tiny_models['wav2vec2'])!r}, beam_size=1, batch_size=4))
print("RESULT" + json.dumps(asr.transcribe(load_audio({str(MEDIA / 'two_men_closeup_704x1280.mp4')!r}))))
""")
    result = json.loads(out.split("RESULT", 1)[1])
    transcript = Transcript.model_validate(result)  # data_specs' rules: ISO language, sorted times
    assert transcript.language == "en" and transcript.segments  # random weights: text is noise, structure is not
    assert all(0 <= s.start_s <= s.end_s <= 5.1 for s in transcript.segments)
    assert all(w.start_s <= w.end_s for w in transcript.words)


def test_faster_whisper_transcribes_in_the_main_env(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    wav, _, _ = speech_with_silence(tmp_path / "speech.wav", "Hello world.", lead_s=0.3, tail_s=0.3)
    stage = TranscribeStage(AsrConfig(enabled=True, backend="faster_whisper", model_dir=tiny_models["whisper"],
                                      beam_size=1, language="en"))
    rows = stage.process_batch([{"key": "a", "audio_path": str(wav)}, {"key": "b", "audio_path": str(wav),
                                                                      "speech_spans": []}])
    transcript = Transcript.model_validate(rows[0]["transcript"])
    assert transcript.language == "en" and isinstance(transcript.segments, list)
    assert rows[1]["transcript"] is None  # VAD heard no speech: not transcribed
