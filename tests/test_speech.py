"""Voice activity (silero-vad), ASR (faster-whisper here; whisperx in .venv-models as a subprocess) and
audio-only segments. Whisper and wav2vec2 are tiny random models built offline in their real formats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_MEDIA, models_python

from ovi_pl.media.audio import iter_audio_windows, load_audio, save_wav
from curation.speech.segments import plan_segments
from curation.speech.vad import VoiceActivity
from curation.keys import audio_segment_key
from curation.config import AsrConfig, AudioSegmentsConfig, VadConfig
from curation.stages.speech import (AudioSegmentsStage, TranscribeStage, VoiceActivityStage, audio_only_sample_json,
                                    segment_caption)
from data_specs import Transcript, parse_sample_meta

TESTS = Path(__file__).parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from speech_media import silent_clip, speech_with_silence  # noqa: E402

MEDIA = SAMPLE_MEDIA  # examples/media, shipped with the repository
CLIPS = ["kitchen_two_women", "stage_three_men", "two_men_closeup"]


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


LONG_SPEECH = ("Hello there. This is a test of the audio tower. The quick brown fox jumps over the lazy dog. "
               "She sells sea shells by the sea shore. Peter Piper picked a peck of pickled peppers.")


def test_audio_segments_stage_cuts_the_whole_source(tmp_path: Path) -> None:
    """Segments follow the source's speech, not the 5.04 s clips: longer than a clip, never over 12 s."""
    wav, start, end = speech_with_silence(tmp_path / "speech.wav", LONG_SPEECH, lead_s=0.5, tail_s=3.0)
    assert end - start > 12.0, "the speech must outlast one segment"
    source = {"input_id": "rec", "uri": str(wav), "path": str(wav), "status": "kept", "caption": None}
    stage = AudioSegmentsStage(AudioSegmentsConfig(enabled=True, min_sound_s=1.5, min_mean_volume_db=-80),
                               VadConfig(), str(tmp_path / "work"))
    rows = stage.process_batch([source])
    # the "sound" here is the -60 dB room noise speech_with_silence pads with, hence the lower floor
    parent, children = rows[0], rows[1:]
    assert parent == {**source, "num_audio_segments": len(children), "stage_time": parent["stage_time"]}, \
        "the input comes back unchanged but for the count (and its share of the stage's time)"
    assert [r["key"] for r in children] == [audio_segment_key(str(wav), i) for i in range(len(children))]
    assert all(r["record_type"] == "audio_clip" and r["parent_key"] == "rec" for r in children)
    speech = [r for r in children if r["segment_kind"] == "speech"]
    sound = [r for r in children if r["segment_kind"] == "sound"]
    assert sound and all(r["speech_spans"] == [] for r in sound), "sound segments are not transcribed"
    assert max(r["duration_s"] for r in speech) > 5.04 and all(r["duration_s"] <= 12.0 for r in children)
    assert abs(speech[0]["start_s"] - start) < 0.3 and abs(speech[-1]["end_s"] - end) < 0.5, (speech, start, end)
    for r in children:
        assert r["status"] == "kept", r
        audio = load_audio(r["flac_path"])
        assert abs(len(audio) / 16000 - r["duration_s"]) < 0.01
        assert all(0 <= a < b <= r["duration_s"] + 1e-3 for a, b in r["speech_spans"]), "spans are segment-relative"


def test_audio_windows_tile_the_file(tmp_path: Path) -> None:
    wav, _, _ = speech_with_silence(tmp_path / "speech.wav", "One two three four five.", lead_s=0.5, tail_s=1.0)
    whole = load_audio(wav)
    windows = list(iter_audio_windows(wav, 1.0))
    assert [start for start, _ in windows] == [float(i) for i in range(len(windows))]
    assert all(len(audio) == 16000 for _, audio in windows[:-1])
    assert np.array_equal(np.concatenate([audio for _, audio in windows]), whole)
    exact = tmp_path / "two_seconds.wav"
    save_wav(exact, whole[:32000])
    assert [len(audio) for _, audio in iter_audio_windows(exact, 1.0)] == [16000, 16000], "no empty last window"


def test_audio_segments_read_the_source_a_window_at_a_time(tmp_path: Path) -> None:
    """Short decode windows give the segments, and the samples, of one pass over the whole file."""
    wav, _, _ = speech_with_silence(tmp_path / "speech.wav", LONG_SPEECH, lead_s=0.5, tail_s=3.0)
    source = {"input_id": "rec", "uri": str(wav), "path": str(wav), "status": "kept", "caption": None}

    def cut(decode_window_s: float) -> list[dict]:
        config = AudioSegmentsConfig(enabled=True, max_s=3.0, min_sound_s=1.5, min_mean_volume_db=-80,
                                     decode_window_s=decode_window_s)
        work = tmp_path / f"window_{decode_window_s:g}"
        return AudioSegmentsStage(config, VadConfig(), str(work)).process_batch([source])[1:]

    whole, windowed = cut(600.0), cut(3.0)
    samples = load_audio(wav)
    assert len(samples) / 16000 > 4 * 3.0, "the source must span several windows"
    # silero starts afresh at each window edge, so spans cut by an edge may move by a few of its frames
    assert [r["segment_kind"] for r in windowed] == [r["segment_kind"] for r in whole]
    for a, b in zip(whole, windowed, strict=True):
        assert abs(a["start_s"] - b["start_s"]) < 0.15 and abs(a["end_s"] - b["end_s"]) < 0.15, (a, b)
        first = round(b["start_s"] * 16000)
        assert np.allclose(load_audio(b["flac_path"]), samples[first:first + round(b["duration_s"] * 16000)],
                           atol=1 / 2**14), f"{b['key']} holds the source's samples from its start_s"
    with pytest.raises(ValueError, match="decode_window_s"):
        AudioSegmentsConfig(max_s=12.0, decode_window_s=10.0)


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
    """Tiny random Whisper (ctranslate2 dir), wav2vec2 CTC dir and pyannote diarization pipeline dir,
    built in .venv-models, whose transformers/ctranslate2/pyannote are the ones whisperx is tested with."""
    if MODELS_PYTHON is None:
        pytest.skip("no .venv-models interpreter to build the tiny Whisper with: run `make models-env`")
    root = tmp_path_factory.mktemp("speech_models")
    _in_models_env(f"""
from pathlib import Path
from speech_media import build_tiny_diarization_pipeline, build_tiny_whisper, build_tiny_wav2vec2
build_tiny_whisper(Path({str(root / 'whisper_hf')!r}), Path({str(root / 'whisper_ct2')!r}))
build_tiny_wav2vec2(Path({str(root / 'wav2vec2')!r}))
build_tiny_diarization_pipeline(Path({str(root / 'diarization')!r}))
""")
    return {"whisper": root / "whisper_ct2", "wav2vec2": root / "wav2vec2", "diarization": root / "diarization"}


@needs_models_env
def test_whisperx_transcribes_and_aligns_from_local_dirs(tiny_models: dict[str, Path]) -> None:
    out = _in_models_env(f"""
import json
from curation.speech.asr import AsrSettings, load_asr
from ovi_pl.media.audio import load_audio
asr = load_asr(AsrSettings(backend="whisperx", model_dir={str(tiny_models['whisper'])!r},
                           align_model_dir={str(tiny_models['wav2vec2'])!r}, beam_size=1, batch_size=4))
print("RESULT" + json.dumps(asr.transcribe(load_audio({str(MEDIA / 'two_men_closeup_704x1280.mp4')!r}))))
""")
    result = json.loads(out.split("RESULT", 1)[1])
    transcript = Transcript.model_validate(result)  # data_specs' rules: ISO language, sorted times
    assert transcript.language == "en" and transcript.segments  # random weights: text is noise, structure is not
    assert all(0 <= s.start_s <= s.end_s <= 5.1 for s in transcript.segments)
    assert all(w.start_s <= w.end_s for w in transcript.words)


DIARIZE = """
import json, sys, sysconfig
import soundfile
from pathlib import Path
from curation.config import AsrConfig
from curation.stages.speech import TranscribeStage
from ovi_pl.media.audio import load_audio
models, out = json.loads(sys.argv[1]), Path(sys.argv[2])
# found on disk, not imported: importing pyannote.audio first would switch its telemetry on, and the
# test checks that the ASR worker, which imports it first in a real run, leaves it off
sample = Path(sysconfig.get_paths()["purelib"]) / "pyannote" / "audio" / "sample"
audio = load_audio(sample / "sample.wav")[5 * 16000:15 * 16000]  # 10 s: silence, then two speakers taking turns
soundfile.write(out / "excerpt.wav", audio, 16000)
stage = TranscribeStage(AsrConfig(enabled=True, backend="whisperx", model_dir=models["whisper"],
                                  align_model_dir=models["wav2vec2"], diarize_model=models["diarization"],
                                  min_speakers=2, max_speakers=2, beam_size=1, batch_size=4))
[row] = stage.process_batch([{"key": "excerpt", "audio_path": str(out / "excerpt.wav")}])
turns = stage._asr.diarizer(audio, min_speakers=2, max_speakers=2)
from pyannote.audio.telemetry.metrics import is_metrics_enabled
print("RESULT" + json.dumps({"transcript": row["transcript"], "telemetry": is_metrics_enabled(),
                             "turns": turns[["start", "end", "speaker"]].values.tolist(),
                             "reference": (sample / "sample.rttm").read_text()}))
"""


def _covered(spans: list[tuple[float, float]], by: list[tuple[float, float]], step: float = 0.01) -> float:
    """Seconds of `spans` that also lie in `by`, on a 10 ms grid."""
    import numpy as np

    grid = np.arange(0, 60, step)
    inside = lambda ss: np.any([(grid >= a) & (grid < b) for a, b in ss], axis=0) if ss else grid < 0  # noqa: E731
    return float((inside(spans) & inside(by)).sum() * step)


@needs_models_env
def test_whisperx_diarizes_from_a_local_pyannote_pipeline(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """The speakers in the transcript come from a pyannote pipeline directory (community-1 layout) loaded
    offline. Its segmentation is the real model whisperx ships, so speech turns are checked against
    pyannote's reference annotation of its sample; the embedding is random, so speaker identity is not."""
    models = {k: str(v) for k, v in tiny_models.items()}
    out = _in_models_env(f"import sys; sys.argv = ['x', {json.dumps(models)!r}, {str(tmp_path)!r}]\n" + DIARIZE,
                         timeout=600)
    result = json.loads(out.split("RESULT", 1)[1])
    assert result["telemetry"] is False, "pyannote's usage traces must stay off unless the user opts in"

    turns = [(a, b, speaker) for a, b, speaker in result["turns"]]
    labels = {speaker for _, _, speaker in turns}
    assert len(labels) == 2, f"min_speakers = max_speakers = 2 reached the pipeline: {labels}"
    reference = []  # RTTM: SPEAKER <file> <channel> <onset> <duration> ...; shifted into the excerpt
    for line in result["reference"].splitlines():
        onset, duration = (float(x) for x in line.split()[3:5])
        a, b = max(onset, 5.0) - 5.0, min(onset + duration, 15.0) - 5.0
        if b > a:
            reference.append((a, b))
    detected = [(a, b) for a, b, _ in turns]
    speech = _covered(reference, reference)
    assert _covered(reference, detected) > 0.9 * speech, (detected, reference)
    assert _covered(detected, detected) - _covered(detected, reference) < 0.1 * speech, "turns where nobody speaks"
    assert min(a for a, _ in detected) > 1.4, "the excerpt's first 1.69 s are silent"

    transcript = Transcript.model_validate(result["transcript"])
    assert transcript.segments and transcript.words
    assert all(s.speaker in labels for s in transcript.segments), transcript.segments
    assert {w.speaker for w in transcript.words} <= labels | {None}
    assert any(w.speaker for w in transcript.words), "words inside turns carry their speaker"


def test_faster_whisper_transcribes_in_the_main_env(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    wav, _, _ = speech_with_silence(tmp_path / "speech.wav", "Hello world.", lead_s=0.3, tail_s=0.3)
    stage = TranscribeStage(AsrConfig(enabled=True, backend="faster_whisper", model_dir=tiny_models["whisper"],
                                      beam_size=1, language="en"))
    rows = stage.process_batch([{"key": "a", "audio_path": str(wav)}, {"key": "b", "audio_path": str(wav),
                                                                      "speech_spans": []}])
    transcript = Transcript.model_validate(rows[0]["transcript"])
    assert transcript.language == "en" and isinstance(transcript.segments, list)
    assert rows[1]["transcript"] is None  # VAD heard no speech: not transcribed


def test_segment_caption_quotes_the_segments_own_words() -> None:
    part = {"language": "en",
            "words": [{"word": "Hello", "start_s": 0.1, "end_s": 0.5}, {"word": "there.", "start_s": 0.6, "end_s": 1.0}],
            "segments": [{"text": "Hello there.", "start_s": 0.1, "end_s": 1.0}]}
    source_caption = ("A man waves and says, <S>Hello there.<E> Then, <S>Later<E>. "
                      "<AUDCAP>A man's voice, a quiet room.<ENDAUDCAP>")
    caption = segment_caption(source_caption, part)
    assert caption == "<S>Hello there.<E> <AUDCAP>A man's voice, a quiet room.<ENDAUDCAP>"
    assert segment_caption(source_caption, None) == "<AUDCAP>A man's voice, a quiet room.<ENDAUDCAP>"
    assert segment_caption("He says, <S>Hi Audio: x<E>. Audio: A voice.", part) == "<S>Hello there.<E> Audio: A voice."
    assert segment_caption("No audio description here.", part) == "" and segment_caption(None, part) == ""
    row = {"key": "x-0123456789ab-a00000", "uri": "/data/x.mp4", "start_s": 10.4, "end_s": 12.0, "duration_s": 1.6}
    assert parse_sample_meta(audio_only_sample_json(row, caption, part)).transcript.words[0].word == "Hello"


def test_collector_waits_for_children_that_arrive_before_their_parent(tmp_path: Path) -> None:
    """Rows of one input arrive in any order; the marker is written once its clip and every segment
    announced on it (kept or rejected) are in and the shards holding them are closed."""
    from curation.config import CurationConfig
    from curation.pipeline import OutputCollector, RunPaths
    from curation.writer import write_shard

    paths = RunPaths(tmp_path / "out")
    config = CurationConfig.model_validate({"inputs": {"paths": ["x"]}, "output": {"shard_max_samples": 1}})
    collector = OutputCollector(paths, config, total_inputs=1)
    work = paths.work / "clips"

    def add(row: dict) -> None:  # as the pipeline does, with each full shard written here instead of on a worker
        for spec in collector.add(row):
            collector.shard_written(write_shard(str(paths.shards), spec))
    work.mkdir(parents=True)

    def media(name: str) -> str:
        (work / name).write_bytes(b"media")
        return str(work / name)

    base = {"input_id": "in1", "uri": "/data/in1.mp4", "status": "kept", "num_clips": 1, "start_s": 0.0, "end_s": 5.04}
    child0 = {**base, "record_type": "audio_clip", "key": "c0_a00", "parent_key": "in1", "sample_json": "{}",
              "flac_path": media("c0_a00.flac")}
    child1 = {**base, "record_type": "audio_clip", "key": "c0_a01", "parent_key": "in1", "status": "rejected",
              "rejected_by": "audio_segments", "reason": "low_volume"}
    parent = {**base, "record_type": "clip", "key": "c0", "num_audio_segments": 2, "sample_json": "{}",
              "mp4_path": media("c0.mp4"), "flac_path": media("c0.flac")}
    add(child0)
    add(parent)
    assert collector.markers.done_ids() == set(), "one announced segment has not arrived"
    add(child1)
    assert collector.markers.done_ids() == {"in1"}
    records = list(collector.markers.records())
    assert sorted((r["record_type"], r["key"], r["status"], bool(r["shard"])) for r in records) == [
        ("audio_clip", "c0_a00", "kept", True), ("audio_clip", "c0_a01", "rejected", False),
        ("clip", "c0", "kept", True)]
    assert not list(work.iterdir()), "work files of written samples are removed"
    collector.check_all_committed()
    import tarfile

    names = sorted(n for t in sorted(paths.shards.glob("*.tar")) for n in tarfile.open(t).getnames())
    assert names == ["c0.flac", "c0.json", "c0.mp4", "c0_a00.flac", "c0_a00.json"]


def _speech_video(out: Path, text: str) -> Path:
    """A moving test pattern (clears the motion filter) with espeak speech from 0.5 s and 3 s of room noise after."""
    wav, _, end = speech_with_silence(out.with_suffix(".wav"), text, lead_s=0.5, tail_s=3.0)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=192x144:rate=24",
                    "-i", str(wav), "-t", f"{end + 3.0:.2f}", "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(out)], check=True)
    return out


AUDCAP = "A synthetic male voice speaking in a quiet room."


def _pipeline(tmp_path: Path, text: str, speech: dict) -> tuple[Path, subprocess.CompletedProcess]:
    import yaml

    video = _speech_video(tmp_path / "talk.mp4", text)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"path": str(video), "caption": "A colourful test pattern while a voice says, "
                                    f"<S>Hello there.<E> <AUDCAP>{AUDCAP}<ENDAUDCAP>"}) + "\n")
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "inputs": {"manifest": str(manifest)}, "output": {"dir": str(out)}, "ray": {"num_cpus": 2},
        "transcode": {"preset": "ultrafast"},
        # the sync judges look at a test pattern against speech; not what this test is about
        "filters": {"area": {"min_area": 160 * 120}, "sync": {"enabled": False}},
        "speech": speech}))
    proc = subprocess.run([sys.executable, "curation/run.py", "--config", str(cfg)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def _tar_members(shards: Path) -> dict[str, bytes]:
    import tarfile

    found: dict[str, bytes] = {}
    for tar in sorted(shards.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                assert m.name not in found, f"{m.name} written twice"
                found[m.name] = t.extractfile(m).read()
    return found


def test_pipeline_writes_audio_only_segments_and_resumes(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A 17 s source: three 5.04 s clips, and audio-only segments cut from the whole source (speech
    longer than a clip, transcribed on its own by the ASR stage; the trailing room noise as sound)."""
    import io

    import soundfile

    asr = {"enabled": True, "backend": "faster_whisper", "model_dir": str(tiny_models["whisper"]), "beam_size": 1,
           "language": "en"}
    out, proc = _pipeline(tmp_path, LONG_SPEECH, {"asr": asr, "audio_segments": {
        "enabled": True, "min_sound_s": 1.5, "min_mean_volume_db": -80}})
    members = _tar_members(out / "shards")
    metas = {name[:-5]: json.loads(data) for name, data in members.items() if name.endswith(".json")}
    clips = [k for k, m in metas.items() if m["kind"] == "audio_video"]
    audio = [k for k, m in metas.items() if m["kind"] == "audio_only"]
    assert len(clips) == 3 and audio, metas
    uri = metas[clips[0]]["source"]["uri"]
    assert sorted(audio) == [audio_segment_key(uri, i) for i in range(len(audio))]
    durations = []
    for key in audio:
        meta = metas[key]
        assert f"{key}.mp4" not in members
        samples, rate = soundfile.read(io.BytesIO(members[f"{key}.flac"]))
        assert rate == 16000 and samples.ndim == 1
        assert abs(len(samples) / rate - meta["media"]["duration_s"]) <= 0.02 and len(samples) / rate <= 12.0
        durations.append(len(samples) / rate)
        assert meta["caption"].endswith(f"<AUDCAP>{AUDCAP}<ENDAUDCAP>"), "the source's audio description"
        assert "Hello there." not in meta["caption"], "a segment quotes its own (transcribed) words, not the source's"
        assert 0 <= meta["source"]["start_s"] < meta["source"]["end_s"] <= 17.5
    assert max(durations) > 5.04, "segments follow the source's speech, not the clips"
    cli = subprocess.run([sys.executable, "-m", "data_specs", "validate", str(out / "shards")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert (summary["clips"], summary["kept"], summary["audio_segments"]) == (3, 3, len(audio))
    assert f"{len(audio)} audio segments" in proc.stdout
    import pyarrow.parquet as pq

    records = pq.read_table(out / "manifest.parquet").to_pylist()
    parents = [r for r in records if r["record_type"] == "clip"]
    children = [r for r in records if r["record_type"] == "audio_clip"]
    assert {r["num_audio_segments"] for r in parents} == {len(children)}
    assert {r["parent_key"] for r in children} == {parents[0]["input_id"]}
    assert all(r["shard"] for r in records if r["status"] == "kept")
    assert not list((out / "_work" / "clips").glob("*")), "work files of written samples are removed"

    # A run killed after its shards were renamed but before the input's marker: the rerun redoes the
    # input and writes none of its keys again (they are indexed from the shards), then marks it done.
    (marker,) = (out / "_state" / "done").glob("*.json")
    marker.unlink()
    rerun = subprocess.run([sys.executable, "curation/run.py", "--config", str(out.parent / "cfg.yaml")], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "1 to process" in rerun.stdout
    assert _tar_members(out / "shards") == members
    again = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted((r["key"], r["status"], r["shard"]) for r in again) == sorted(
        (r["key"], r["status"], r["shard"]) for r in records)


def test_pipeline_without_audio_segments_writes_clips_only(tmp_path: Path) -> None:
    out, proc = _pipeline(tmp_path, "Hello there. This is a test of the audio tower.",
                          {"audio_segments": {"enabled": False}})
    metas = [json.loads(d) for n, d in _tar_members(out / "shards").items() if n.endswith(".json")]
    assert [m["kind"] for m in metas] == ["audio_video"]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert (summary["clips"], summary["kept"], summary["audio_segments"]) == (1, 1, 0)
    import pyarrow.parquet as pq

    columns = pq.read_table(out / "manifest.parquet").column_names
    assert not {"num_audio_segments", "parent_key", "segment_kind"} & set(columns)
    assert "audio segments" not in proc.stdout
