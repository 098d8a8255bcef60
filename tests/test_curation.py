"""Curation pipeline: config, stage framework, filters, shards, resume after SIGKILL, `ray job submit`.

The end-to-end tests run `curation/run.py` as a subprocess on small synthetic media (ffmpeg lavfi)
and the three sample clips in examples/media; each run starts its own in-process Ray cluster.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from curation.config import ConfigError, CurationConfig
from curation.preflight import load_config
from curation.keys import clip_key
from curation.runner import apply_stage
from curation.stage import Row, Stage
from curation.stages.scenes import clip_windows
from curation.stages.volume import SILENCE_DB, mean_volume_db
from data_specs import validate_shards
from data_specs.lineage import DATASET_FILE, read_dataset_file

sys.path.insert(0, str(Path(__file__).parent))
from curation_media import EXPECTED, local_ray, make_synthetic_media  # noqa: E402,F401 (a fixture)
from conftest import SAMPLE_CLIPS, models_python  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REAL_CLIPS = list(SAMPLE_CLIPS)
PYTHON = sys.executable
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

# Test captions describe the synthetic media truthfully; the schema requires one per sample.
CAPTIONS = {
    "moving": "A colourful test pattern with a moving ball and counter. <AUDCAP>A steady 440 Hz tone.<ENDAUDCAP>",
    "two_scenes": "A test pattern, then a hard cut to its colour negative. <AUDCAP>A steady 330 Hz tone.<ENDAUDCAP>",
}
REAL_CAPTION = "People talk to each other on camera, <S>words<E>. <AUDCAP>Voices speaking.<ENDAUDCAP>"


# ---------------------------------------------------------------- config


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_defaults_are_the_papers() -> None:
    config = CurationConfig.model_validate({"inputs": {"paths": ["x"]}})
    assert (config.clip.num_frames, config.clip.fps, config.clip.audio_sample_rate) == (121, 24, 16000)
    assert config.filters.area.min_area == 720 * 720
    assert config.filters.volume.min_mean_volume_db == -60.0
    assert config.filters.motion.enabled and not config.filters.aesthetic.enabled
    shipped = load_config(REPO / "configs" / "curation.yaml")
    assert shipped.model_dump(exclude={"inputs"}) == CurationConfig.model_validate(
        {"inputs": {"paths": ["x"]}}).model_dump(exclude={"inputs"}), "configs/curation.yaml drifted from the defaults"
    load_config(REPO / "configs" / "curation_demo.yaml")


@pytest.mark.parametrize("patch, expected", [
    ({"filters": {"motion": {"min_motoin": 1.0}}}, "filters.motion.min_motoin: unknown key"),
    ({"filters": {"volume": {"min_mean_volume_db": "loud"}}}, "filters.volume.min_mean_volume_db"),
    ({"clip": {"fps": 25}}, "clip.fps"),
    ({"output": {"shard_max_samples": 0}}, "output.shard_max_samples"),
    ({"filters": {"aesthetic": {"enabled": True}}}, "clip_weights, head_weights is not set"),
    ({"probe": {"min_side": 900, "max_side": 100}}, "probe.min_side (900) is above probe.max_side"),
])
def test_config_errors_name_the_key(tmp_path: Path, patch: dict, expected: str) -> None:
    data = {"inputs": {"paths": [str(tmp_path)]}, **patch}
    with pytest.raises(ConfigError) as err:
        load_config(_write_yaml(tmp_path / "bad.yaml", data))
    assert expected in str(err.value)


def test_config_checks_local_model_files_before_any_work(tmp_path: Path) -> None:
    """Every model path a stage would load is checked when the config loads, all problems at once."""
    (tmp_path / "whisper").mkdir()
    (tmp_path / "diarization").mkdir()  # a directory without its config.yaml
    data = {"inputs": {"paths": [str(tmp_path)]},
            "filters": {"syncnet": {"enabled": True, "weights": str(tmp_path / "syncnet_v2.model")}},
            "speech": {"asr": {"enabled": True, "backend": "whisperx", "model_dir": str(tmp_path / "whisper"),
                               "align_model_dir": str(tmp_path / "wav2vec2"),
                               "diarize_model": str(tmp_path / "diarization")}},
            "captions": {"enabled": True, "backend": "local", "local": {"model_dir": str(tmp_path / "whisper")}},
            "envs": {"models": {"python": str(tmp_path / "no-env" / "python")}}}
    with pytest.raises(ConfigError) as err:
        load_config(_write_yaml(tmp_path / "bad.yaml", data))
    message = str(err.value)
    for expected in ("filters.syncnet.weights: ", "speech.asr.align_model_dir: ", "wav2vec2 does not exist",
                     "speech.asr.diarize_model: ", "has no config.yaml", "speaker-diarization-community-1",
                     "envs.models.python: ", "needed by speech.asr", "captions.local.model_dir: "):
        assert expected in message, (expected, message)
    assert "speech.asr.model_dir" not in message, "the Whisper directory exists"
    (tmp_path / "diarization" / "config.yaml").write_text("pipeline: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(_write_yaml(tmp_path / "bad.yaml", data))
    assert "has no config.yaml" not in str(err.value)


def test_cli_rejects_bad_config_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "bad.yaml", {"inputs": {"paths": [str(tmp_path)]}, "output": {"dir": str(out)},
                                              "filters": {"area": {"min_area": -5}}})
    t0 = time.time()
    proc = subprocess.run([PYTHON, "-m", "curation.run", "--config", str(cfg)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "filters.area.min_area" in proc.stderr
    assert not out.exists(), "nothing may be written for an invalid config"
    assert time.time() - t0 < 30


# ---------------------------------------------------------------- framework and stage logic


class _Flaky(Stage):
    name = "flaky"

    def process_batch(self, rows: list[Row]) -> list[Row]:
        for row in rows:
            if row["n"] == 2:
                raise ValueError("cannot decode frame 17")
        return [{**row, "seen": True} for row in rows]


def test_failing_row_is_quarantined_and_its_batch_mates_survive() -> None:
    rows = [{"n": n, "status": "kept"} for n in range(4)] + [{"n": 9, "status": "rejected", "reason": "x"}]
    out = apply_stage(_Flaky(), rows)
    by_n = {r["n"]: r for r in out}
    assert len(out) == 5
    assert all(by_n[n].get("seen") for n in (0, 1, 3))
    assert by_n[2]["status"] == "quarantined" and by_n[2]["rejected_by"] == "flaky"
    assert by_n[2]["error_type"] == "ValueError" and "frame 17" in by_n[2]["error"]
    assert by_n[9] == rows[4], "rejected rows pass around the stage untouched"


def test_audio_only_rows_pass_around_video_stages() -> None:
    class _AudioToo(_Flaky):
        takes_audio_only = True

    rows = [{"n": 0, "status": "kept", "record_type": "clip"}, {"n": 1, "status": "kept", "record_type": "audio_clip"}]
    video_only = {r["n"]: r for r in apply_stage(_Flaky(), rows)}
    assert video_only[0].get("seen") and video_only[1] == rows[1]
    assert all(r.get("seen") for r in apply_stage(_AudioToo(), rows))


def test_manifest_streams_records_of_varying_shape_from_the_markers(tmp_path: Path) -> None:
    """The driver reads markers twice (accounting, then parquet in batches) instead of holding all
    records; columns that differ between records must come out typed as one table."""
    from curation.report import RunAccounting, write_manifest, write_report
    from curation.writer import Markers

    markers = Markers(tmp_path / "state")
    markers.write("in1", "a.mp4", [
        {"input_id": "in1", "uri": "a.mp4", "record_type": "clip", "key": "a_0", "status": "kept", "stage": None,
         "reason": None, "start_s": 0, "scores": {"motion": 1.5}},
        {"input_id": "in1", "uri": "a.mp4", "record_type": "clip", "key": "a_1", "status": "rejected",
         "stage": "volume", "reason": "low_volume", "start_s": 5.04, "scores": {"motion": 0.2, "mean_volume_db": -70}}])
    markers.write("in2", "b.mp4", [
        {"input_id": "in2", "uri": "b.mp4", "record_type": "input", "status": "quarantined", "stage": "probe",
         "reason": "error", "error_type": "ValueError", "error": "moov atom not found", "detail": {"bytes": 12},
         "scores": {}},
        {"input_id": "in2", "uri": "b.mp4", "record_type": "audio_clip", "key": "b_a00", "status": "kept",
         "stage": None, "reason": None, "parent_key": "b_0", "scores": {}}])
    accounting = RunAccounting()
    for record in markers.records():
        accounting.add(record)
    write_manifest(markers.records(), accounting.manifest_schema(), tmp_path / "manifest.parquet", batch_rows=1)
    table = pq.read_table(tmp_path / "manifest.parquet")
    assert table.num_rows == 4
    assert str(table.schema.field("start_s").type) == "double", "ints and floats share one column"
    assert table.column("detail").to_pylist() == [None, None, '{"bytes": 12}', None], "nested values: JSON text"
    assert table.column("score_mean_volume_db").to_pylist() == [None, -70.0, None, None]
    assert table.column("parent_key").to_pylist() == [None, None, None, "b_0"]
    summary = write_report(accounting, tmp_path / "report", {"motion": 0.5})
    assert (summary["inputs"], summary["clips"], summary["kept"], summary["rejected"], summary["quarantined"],
            summary["audio_segments"]) == (2, 2, 1, 1, 1, 1)
    assert summary["by_reason"] == {"probe: error": 1, "volume: low_volume": 1}
    assert summary["images"] == ["hist_mean_volume_db.png", "hist_motion.png"]


def test_clip_windows_stay_inside_scenes() -> None:
    clip = 121 / 24
    windows = clip_windows([(0.0, 6.0), (6.0, 17.0), (17.0, 19.0)], clip, None)
    assert [(s, round(a, 3)) for s, a, _ in windows] == [(0, 0.0), (1, 6.0), (1, 11.042)]
    for scene, start, end in windows:
        lo, hi = [(0.0, 6.0), (6.0, 17.0), (17.0, 19.0)][scene]
        assert lo <= start < end <= hi + 1e-9
    assert clip_windows([(0.0, 122 / 24)], clip, None), "a 122-frame scene holds one 121-frame clip"
    assert len(clip_windows([(0.0, 60.0)], clip, 3)) == 3


def test_keys_are_deterministic_and_dot_free() -> None:
    key = clip_key("/data/raw/My Video.v2.mp4", 7)
    assert key == clip_key("/data/raw/My Video.v2.mp4", 7) and "." not in key and key.endswith("-00007")
    assert key != clip_key("/data/other/My Video.v2.mp4", 7)


def test_mean_volume_matches_volumedetect_convention() -> None:
    import numpy as np

    t = np.arange(16000) / 16000
    assert abs(mean_volume_db(0.5 * np.sin(2 * np.pi * 440 * t)) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.01
    assert mean_volume_db(np.zeros(16000)) == SILENCE_DB


def test_aesthetic_head_has_laion_layout() -> None:
    torch = pytest.importorskip("torch")
    from curation.stages.aesthetic import build_head

    head = build_head().eval()
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {"layers.0.weight": (1024, 768), "layers.0.bias": (1024,), "layers.2.weight": (128, 1024),
                      "layers.2.bias": (128,), "layers.4.weight": (64, 128), "layers.4.bias": (64,),
                      "layers.6.weight": (16, 64), "layers.6.bias": (16,), "layers.7.weight": (1, 16),
                      "layers.7.bias": (1,)}
    x = torch.randn(3, 768)
    assert torch.allclose(head(x), head(5 * x), atol=1e-5), "embeddings are L2-normalised before the MLP"


AESTHETIC_CHECK = """
import json, sys, torch
from pathlib import Path
from curation.config import AestheticFilter
from curation.stages.aesthetic import AestheticFilterStage, build_head
from tiny_open_clip import write_tiny_clip_768
tmp, clips = Path(sys.argv[1]), sys.argv[2:]
# Real weights are not downloadable in tests: a tiny open_clip model with ViT-L/14's 768-d embedding (what
# the LAION head takes) and random weights, loaded from local files by the stage's own code. The scores are
# what this model says of these clips; a random ViT-L/14 says nearly the same of any image, and slowly.
write_tiny_clip_768(tmp)
head = build_head()
with torch.no_grad():  # the head is linear; a random one maps every clip to nearly one score, so spread them
    head.layers[7].weight.mul_(1000.0)
torch.save(head.state_dict(), tmp / "head.pth")
config = dict(enabled=True, clip_model="tiny-clip-768", clip_weights=tmp / "clip.pt", head_weights=tmp / "head.pth",
              num_frames=2, environment="main")
stage = AestheticFilterStage(AestheticFilter(**config, min_score=-1e9))
stage.setup()


def run():
    rows = stage.process_batch([{"key": str(i), "status": "kept", "mp4_path": c, "scores": {}}
                                for i, c in enumerate(clips)])
    return [[r["status"], r.get("reason"), r["scores"]["aesthetic"]] for r in rows]


first = run()  # what the stage scores these clips, nothing rejected
scores = [score for _, _, score in first]
out = {"first": first, "runs": {}}
for name, threshold in (("between", sum(scores) / 2), ("at_lower", min(scores)), ("above_both", max(scores) + 1)):
    stage.config = AestheticFilter(**config, min_score=threshold)
    out["runs"][name] = run()
print("RESULT" + json.dumps(out))
"""


def test_aesthetic_stage_rejects_below_the_threshold_and_keeps_the_rest(tmp_path: Path) -> None:
    """Score two clips (a moving test pattern, a flat teal frame) with the stage, then run it again with
    thresholds derived from those scores: between them it rejects the lower one only (`low_aesthetic`, its
    score recorded); at the lower score it keeps both (the rule is score >= min_score); above both it
    rejects both."""
    # open-clip imports only in the second environment (README "Environments"), so the stage runs there.
    python = models_python()
    if python is None:
        pytest.skip("the aesthetic stage needs .venv-models (make models-env), which is not installed")
    media = make_synthetic_media(tmp_path / "media")
    result = subprocess.run([str(python), "-c", AESTHETIC_CHECK, str(tmp_path), str(media["moving"]),
                             str(media["static"])], capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{Path(__file__).parent}"})
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    runs = out["runs"]
    scores = [score for _, _, score in out["first"]]
    assert [status for status, _, _ in out["first"]] == ["kept", "kept"]
    assert abs(scores[0] - scores[1]) > 0.01, scores
    low = scores.index(min(scores))
    assert runs["between"][low] == ["rejected", "low_aesthetic", scores[low]]
    assert runs["between"][1 - low] == ["kept", None, scores[1 - low]]
    assert runs["at_lower"] == [["kept", None, scores[0]], ["kept", None, scores[1]]]
    assert runs["above_both"] == [["rejected", "low_aesthetic", scores[0]], ["rejected", "low_aesthetic", scores[1]]]


def test_discovery_of_directories_manifests_and_urls(tmp_path: Path) -> None:
    from curation.stages.discover import DiscoverInputs, InputNotFoundError, read_manifest

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.mp4", "a/b/two.MOV", "a/b/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    discover = DiscoverInputs([".mp4", ".mov"])
    found = discover.process_batch([{"spec": str(tmp_path / "a")}, {"spec": f"file://{tmp_path}/a/one.mp4"}])
    assert sorted(Path(r["uri"]).name for r in found) == ["one.mp4", "two.MOV"], "recursive, by extension, deduplicated"
    with pytest.raises(InputNotFoundError, match="fix inputs.paths"):
        discover.process_batch([{"spec": str(tmp_path / "missing")}])
    manifest = tmp_path / "list.txt"
    manifest.write_text("# sources\na/one.mp4\nmissing.mp4\n")
    rows = DiscoverInputs([".mp4"], strict=False).process_batch(read_manifest(manifest))
    assert [(Path(r["uri"]).name, r["status"], r.get("reason")) for r in rows] == [
        ("one.mp4", "kept", None), ("missing.mp4", "rejected", "not_found")]


@needs_ffmpeg
def test_probe_copies_fsspec_urls_to_local_disk(tmp_path: Path) -> None:
    import fsspec

    from curation.config import ProbeConfig
    from curation.stages.discover import DiscoverInputs
    from curation.stages.probe import ProbeInputs

    media = make_synthetic_media(tmp_path / "media")
    with fsspec.open("memory://bucket/videos/clip.mp4", "wb") as f:
        f.write(media["moving"].read_bytes())
    (row,) = DiscoverInputs([".mp4"]).process_batch([{"spec": "memory://bucket/videos"}])
    assert row["uri"].startswith("memory://") and row["uri"].endswith("/bucket/videos/clip.mp4")
    (probed,) = ProbeInputs(ProbeConfig(), str(tmp_path / "downloads")).process_batch([row])
    assert probed["status"] == "kept" and Path(probed["path"]).parent == tmp_path / "downloads"
    assert probed["probe"]["fps"] == 24 and probed["probe"]["has_audio"]


def test_each_input_runs_in_its_own_task_when_ray_packs_inputs_into_blocks(local_ray: None) -> None:
    """Ray packs many inputs into one block; a long source must not hold back the inputs packed with it."""
    import ray.data

    from curation.pipeline import stream_rows
    from curation_media import TaskOfEachRow

    context = ray.data.DataContext.get_current()
    default_blocks = context.read_op_min_num_blocks
    context.read_op_min_num_blocks = 1  # so 12 inputs come in a few blocks, as a million would by default
    try:
        out = list(stream_rows([{"status": "kept", "n": n} for n in range(12)], [TaskOfEachRow()]))
    finally:
        context.read_op_min_num_blocks = default_blocks
    assert sorted(r["n"] for r in out) == list(range(12))
    assert len({r["task_id"] for r in out}) == 12


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("curation_inputs")
    media = make_synthetic_media(root / "media")
    uncaptioned = root / "media" / "uncaptioned.mp4"
    shutil.copy(media["moving"], uncaptioned)
    lines = [{"path": str(path), "caption": CAPTIONS.get(name)} for name, path in media.items()]
    lines.append({"path": str(uncaptioned)})
    lines += [{"path": str(p), "caption": REAL_CAPTION} for p in REAL_CLIPS]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"root": root, "media": media, "manifest": manifest, "uncaptioned": uncaptioned}


def _config(inputs: dict, out: Path, **output: int) -> dict:
    return {"inputs": {"manifest": str(inputs["manifest"])},
            "output": {"dir": str(out), "progress_interval_s": 2, **output},
            "ray": {"num_cpus": 2},
            "transcode": {"preset": "ultrafast"},
            # The synthetic media are 192x144; the real clips (1280x704, 1344x704) clear the paper's 720*720 anyway.
            "filters": {"area": {"min_area": 160 * 120}}}


def _run(cfg: Path, timeout: float = 480) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYTHON, "curation/run.py", "--config", str(cfg)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _shard_keys(shards: Path) -> list[str]:
    import tarfile

    keys = []
    for tar in sorted(shards.glob("*.tar")):
        with tarfile.open(tar) as t:
            keys += [n.split(".", 1)[0] for n in t.getnames() if n.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def full_run(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("curation_full") / "out"
    cfg = _write_yaml(out.parent / "cfg.yaml", _config(inputs, out, shard_max_samples=2))
    t0 = time.time()
    proc = _run(cfg)
    return {"out": out, "cfg": cfg, "stdout": proc.stdout, "seconds": time.time() - t0,
            "records": pq.read_table(out / "manifest.parquet").to_pylist()}


@needs_ffmpeg
def test_each_input_kept_or_rejected_for_the_right_reason(full_run: dict, inputs: dict) -> None:
    by_uri: dict[str, list[dict]] = {}
    for r in full_run["records"]:
        by_uri.setdefault(r["uri"], []).append(r)
    for name, path in inputs["media"].items():
        got = sorted((r["status"], r["stage"], r["reason"]) for r in by_uri[str(path)])
        assert got == sorted(EXPECTED[name], key=str), f"{name}: {by_uri[str(path)]}"
    assert [(r["stage"], r["reason"]) for r in by_uri[str(inputs["uncaptioned"])]] == [("package", "uncaptioned")]
    for clip in REAL_CLIPS:
        (record,) = by_uri[str(clip)]
        assert record["status"] == "kept", record
        assert record["score_area"] >= 720 * 720 and record["score_mean_volume_db"] >= -60 and record["score_motion"] > 0
    # rejected records keep the score that failed them
    static = by_uri[str(inputs["media"]["static"])][0]
    assert static["score_motion"] < 0.02 and "min_motion" in static["detail"]
    assert by_uri[str(inputs["media"]["silent"])][0]["score_mean_volume_db"] < -60


@needs_ffmpeg
def test_clips_never_cross_a_scene_cut(full_run: dict, inputs: dict) -> None:
    clips = sorted((r["start_s"], r["end_s"]) for r in full_run["records"]
                   if r["uri"] == str(inputs["media"]["two_scenes"]))
    assert len(clips) == 2
    cut = 6.0
    for start, end in clips:
        assert end <= cut + 1 / 24 or start >= cut - 1 / 24, f"clip {start}-{end} crosses the cut at {cut} s"
    assert abs(clips[1][0] - cut) < 2 / 24, "the second scene's clip starts at the cut"


@needs_ffmpeg
def test_shards_are_valid_and_hold_exactly_the_kept_clips(full_run: dict) -> None:
    out = full_run["out"]
    report = validate_shards([out / "shards"])
    assert report.ok, report.summary() + str(report.bad_samples) + str(report.shard_errors)
    kept = {r["key"] for r in full_run["records"] if r["status"] == "kept"}
    keys = _shard_keys(out / "shards")
    assert len(keys) == len(set(keys)) and set(keys) == kept and len(kept) == 2 + 1 + len(REAL_CLIPS)
    assert all(r["shard"] for r in full_run["records"] if r["status"] == "kept")
    assert len(list((out / "shards").glob("*.tar"))) == (len(kept) + 1) // 2
    sample = json.loads(next(iter(_members(out / "shards", ".json").values())))
    assert {"uri", "start_s", "end_s"} <= set(sample["source"]) and {"area", "mean_volume_db", "motion"} <= set(sample["scores"])
    assert sample["media"]["video"]["num_frames"] == 121 and sample["media"]["audio"]["sample_rate"] == 16000


def _members(shards: Path, suffix: str) -> dict[str, bytes]:
    import tarfile

    found = {}
    for tar in sorted(shards.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                if m.name.endswith(suffix):
                    found[m.name] = t.extractfile(m).read()
    return found


@needs_ffmpeg
def test_report_and_printed_counts(full_run: dict) -> None:
    report = full_run["out"] / "report"
    page = (report / "index.html").read_text()
    for png in ("hist_motion.png", "hist_mean_volume_db.png", "hist_area.png"):
        assert (report / png).stat().st_size > 1000 and png in page
    summary = json.loads((report / "summary.json").read_text())
    assert summary["by_reason"]["probe: not_media"] == 1 and summary["kept"] == 6
    assert "6 kept" in full_run["stdout"] and "motion: static" in full_run["stdout"]


@needs_ffmpeg
def test_run_log_has_a_line_per_input_and_progress_per_stage(full_run: dict, inputs: dict) -> None:
    log = (full_run["out"] / "run.log").read_text()
    finished = re.findall(r"input \d+/(\d+) finished: (\S+) -> (.*)", log)
    assert sorted(uri for _, uri, _ in finished) == sorted({r["uri"] for r in full_run["records"]})
    outcome = {uri: text for _, uri, text in finished}
    assert outcome[str(inputs["media"]["static"])] == "no clip kept; rejected: motion: static"
    assert outcome[str(inputs["media"]["two_scenes"])] == "kept 2 clips"
    assert outcome[str(inputs["media"]["corrupt"])] == "no clip kept; rejected: probe: not_media"
    progress = [line for line in log.splitlines() if "progress: inputs" in line]
    assert progress, "progress_interval_s is 2 s and the run takes longer"
    for stage in ("probe", "scenes", "transcode", "motion", "package"):
        assert re.search(rf"\| {stage} \d+ rows, \d+ kept", progress[-1]), (stage, progress[-1])
    assert "input 1/" in full_run["stdout"] and "progress: inputs" in full_run["stdout"]


@needs_ffmpeg
def test_rerun_of_a_finished_run_does_nothing(full_run: dict) -> None:
    before = sorted(p.name for p in (full_run["out"] / "shards").iterdir())
    dataset = read_dataset_file(full_run["out"] / "shards" / DATASET_FILE)
    proc = _run(full_run["cfg"], timeout=60)
    assert "0 to process" in proc.stdout
    assert sorted(p.name for p in (full_run["out"] / "shards").iterdir()) == before
    # The same data keeps its lineage id (data_specs/lineage.py), and the record names this run.
    assert read_dataset_file(full_run["out"] / "shards" / DATASET_FILE).dataset_id == dataset.dataset_id
    assert dataset.curation_dir == str(full_run["out"].resolve()) and dataset.summary["kept"] == 6


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _end(procs: list[psutil.Process], grace_s: float = 3.0) -> None:
    """Stop exactly these processes (a Ray cluster this test started), by pid."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@needs_ffmpeg
def test_sigkill_then_rerun_gives_the_same_clips(full_run: dict, inputs: dict, tmp_path: Path) -> None:
    """SIGKILL the driver as soon as a worker has renamed the first shard into place (its inputs' markers
    may or may not be written yet), rerun: every kept clip is in exactly one shard, and no shard of either
    run was written by a driver process."""
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "cfg.yaml", _config(inputs, out, shard_max_samples=1))
    done = out / "_state" / "done"
    driver = subprocess.Popen([PYTHON, "curation/run.py", "--config", str(cfg)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    cluster: list[psutil.Process] = []
    try:
        deadline = time.time() + 420
        while not list((out / "shards").glob("shard-*.tar")):
            assert driver.poll() is None, "the run ended before writing a shard"
            assert time.time() < deadline, "no shard within 420 s"
            cluster = _descendants(driver.pid) or cluster
            time.sleep(0.05)
        cluster = _descendants(driver.pid) or cluster
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
        _end(cluster + [q for p in cluster for q in _descendants(p.pid)])
    finished_at_kill = len(list(done.glob("*.json")))
    total = len(inputs["media"]) + 1 + len(REAL_CLIPS)
    assert finished_at_kill < total, "the run finished before it was killed; nothing was tested"

    proc = _run(cfg)
    assert f"{finished_at_kill} already done" in proc.stdout
    keys = _shard_keys(out / "shards")
    assert len(keys) == len(set(keys)), "a clip key was written twice"
    expected = {r["key"] for r in full_run["records"] if r["status"] == "kept"}
    assert set(keys) == expected
    assert validate_shards([out / "shards"]).ok
    records = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(records) == len(full_run["records"]) and not list((out / "shards").glob(".tmp-*"))
    log = (out / "run.log").read_text()
    drivers = set(re.findall(r"driver pid (\d+)", log))
    writers = set(re.findall(r"written on \S+ \(pid (\d+)\)", log))
    assert str(driver.pid) in drivers and len(drivers) == 2, "both runs log to one run.log"
    assert writers and not writers & drivers, "shards are written by Ray workers, not the driver"


def _dashboard_missing() -> str | None:
    # `ray job submit` talks to the dashboard's job server, which needs ray[default]; the project pins ray[data].
    from ray._private.utils import get_dashboard_dependency_error

    error = get_dashboard_dependency_error()
    return f"the Ray dashboard (job server) cannot start: {error}; install ray[default]==2.60.0" if error else None


def _readme_ray_commands() -> tuple[list[str], list[str]]:
    """The `ray start` and `ray job submit` lines of README.md's Curation section, as a user types them."""
    section = (REPO / "README.md").read_text().split("\n## Curation\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split(" #", 1)[0].strip() for line in section.splitlines()]
    start = next(line for line in lines if line.startswith("ray start "))
    submit = next(line for line in lines if line.startswith("ray job submit "))
    return shlex.split(start), shlex.split(submit)


# What `ray start --head` binds by default: GCS, dashboard, Ray client server, dashboard agent.
_RAY_DEFAULT_PORTS = (6379, 8265, 10001, 52365)


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket in TIME_WAIT is no obstacle
        try:
            s.bind(("", port))
        except OSError:
            return True
    return False


def _with_home(home: Path) -> list[psutil.Process]:
    """The processes whose HOME is `home` (the cluster started there, its jobs) and all their children."""
    entry = f"HOME={home}".encode()
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            # Read raw: setproctitle (the ray::... processes) zeroes the start of the environment,
            # where psutil's environ() stops.
            if p.pid != os.getpid() and entry in Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0"):
                found |= {q.pid: q for q in [p, *p.children(recursive=True)]}
        except (OSError, psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return list(found.values())


def _session_dirs(procs: list[psutil.Process]) -> set[Path]:
    """The session directories (under Ray's temp dir) that these Ray processes were started with."""
    dirs = set()
    for p in procs:
        try:
            dirs |= {Path(m) for m in re.findall(r"--session[-_]dir=(\S+)", " ".join(p.cmdline()))}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return dirs


def _stop_cluster_of(home: Path, address: str | None) -> None:
    """Not `ray stop`, which stops every Ray cluster of this user on the machine: only the processes that
    inherited `home` (stopping the raylet orphans its workers; they are found on the next pass). Then what
    `ray stop` clears: the note that makes a later plain `ray.init()` join this cluster (and wait forever
    once it is gone), if it still names `address`, and the cluster's session directories."""
    sessions: set[Path] = set()
    for _ in range(3):
        cluster = _with_home(home)
        sessions |= _session_dirs(cluster)
        _end(cluster)
    if address and _cluster_address() == address:
        _ray_address_file().unlink(missing_ok=True)
    for session in sessions:
        shutil.rmtree(session, ignore_errors=True)
        for link in session.parent.iterdir():  # session_latest and the like, now dangling
            if link.is_symlink() and Path(os.readlink(link)).is_relative_to(session):
                link.unlink(missing_ok=True)


def _ray_address_file() -> Path:
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _cluster_address() -> str | None:
    """The address `ray start --head` noted for later plain `ray.init()` calls."""
    address_file = _ray_address_file()
    return address_file.read_text() if address_file.exists() else None


@needs_ffmpeg
@pytest.mark.skipif(_dashboard_missing() is not None, reason=str(_dashboard_missing()))
def test_ray_job_submit_runs_the_pipeline(inputs: dict, tmp_path: Path) -> None:
    """README.md's `ray start` and `ray job submit`, verbatim but for the config, in a fresh home after an
    in-process run there (which once left ~/.ray/auth_token behind: `ray start` then required a token that
    `ray job submit` did not send) and with no Ray auth settings in the environment."""
    start, submit = _readme_ray_commands()
    assert submit[-2:] == ["--config", "configs/curation.yaml"], submit
    taken = [port for port in _RAY_DEFAULT_PORTS if _port_taken(port)]
    if taken:  # the README's commands use Ray's default ports
        pytest.skip(f"Ray's default ports {taken} are in use (another Ray cluster on this machine?)")
    home = tmp_path / "home"
    home.mkdir()
    # A user's shell: a fresh home, this venv activated, no Ray address or auth settings (an in-process
    # cluster of this test process may have put RAY_AUTH_* into os.environ).
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), PATH=f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"path": str(inputs["media"]["moving"]), "caption": CAPTIONS["moving"]}) + "\n"
                        + json.dumps({"path": str(inputs["media"]["static"])}) + "\n")
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "cfg.yaml", {**_config(inputs, out), "inputs": {"manifest": str(manifest)}})
    in_process = ("import sys, ray; from curation.preflight import load_config; "
                  "from curation.pipeline import init_ray; init_ray(load_config(sys.argv[1])); ray.shutdown()")
    address = None
    try:
        first = subprocess.run([PYTHON, "-c", in_process, str(cfg)], cwd=REPO, capture_output=True, text=True,
                               timeout=120, env=env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        started = subprocess.run(start, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        address = _cluster_address()
        for _ in range(30):  # the dashboard agent that takes jobs comes up a few seconds after `ray start` returns
            job = subprocess.run(submit[:-1] + [str(cfg)], cwd=REPO, capture_output=True, text=True, timeout=240,
                                 env=env)
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(1)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout.lower(), job.stdout[-3000:]
        assert "Started a local Ray instance" not in job.stdout, "the job must join the cluster, not start its own"
        assert _shard_keys(out / "shards") == [clip_key(str(inputs["media"]["moving"]), 0)]
        assert validate_shards([out / "shards"]).ok
    finally:
        _stop_cluster_of(home, address)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@needs_ffmpeg
@pytest.mark.skipif(_dashboard_missing() is not None, reason=str(_dashboard_missing()))
def test_two_nodes_process_clips_on_both_and_write_what_one_node_writes(full_run: dict, inputs: dict,
                                                                         tmp_path: Path) -> None:
    """A head and a worker node on 127.0.0.1 (`ray start`, one CPU each), the pipeline submitted with
    `ray job submit` as the README says: Ray's task records show stage tasks ran on both nodes, and the
    manifest rows and shard members of these inputs are the single-node run's (`full_run`)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), PATH=f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}")
    gcs, dashboard, client, agent_a, agent_b = _free_ports(5)
    ray_bin = str(Path(PYTHON).parent / "ray")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--object-store-memory={200 * 2**20}"]
    head = [ray_bin, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_a}",
            '--resources={"node_a": 1}', *common]
    worker = [ray_bin, "start", f"--address=127.0.0.1:{gcs}", f"--dashboard-agent-listen-port={agent_b}",
              '--resources={"node_b": 1}', *common]
    names = ("moving", "static", "two_scenes")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(inputs["media"][n]), "caption": CAPTIONS.get(n)}) + "\n"
                                for n in names))
    out = tmp_path / "out"
    cfg = _write_yaml(tmp_path / "cfg.yaml", {**_config(inputs, out, shard_max_samples=2),
                                              "inputs": {"manifest": str(manifest)}})
    address, noted = f"http://127.0.0.1:{dashboard}", None
    try:
        for command in (head, worker):
            started = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
            assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
            noted = noted or _cluster_address()
        for _ in range(30):  # the dashboard agent that takes jobs comes up a few seconds after `ray start` returns
            job = subprocess.run([ray_bin, "job", "submit", "--address", address, "--working-dir", ".", "--",
                                  "python", "curation/run.py", "--config", str(cfg)], cwd=REPO, capture_output=True,
                                 text=True, timeout=300, env=env)
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(1)
        assert job.returncode == 0 and "succeeded" in job.stdout.lower(), job.stdout[-3000:] + job.stderr[-3000:]
        listed = subprocess.run([ray_bin, "list", "tasks", "--address", address, "--detail", "--format", "json",
                                 "--limit", "10000"], capture_output=True, text=True, timeout=120, env=env)
        assert listed.returncode == 0, listed.stderr[-3000:]
        nodes = subprocess.run([ray_bin, "list", "nodes", "--address", address, "--format", "json"],
                               capture_output=True, text=True, timeout=120, env=env)
        node_ids = {n["node_id"] for n in json.loads(nodes.stdout)}
        assert len(node_ids) == 2, nodes.stdout
        stage_nodes = {t["node_id"] for t in json.loads(listed.stdout)
                       if "MapBatches(transcode)" in t["name"] and t["state"] == "FINISHED"}
        assert stage_nodes == node_ids, "transcode ran on both nodes"
    finally:
        _stop_cluster_of(home, noted)
    inputs_here = {str(inputs["media"][n]) for n in names}

    def rows(records: list[dict]) -> list[str]:  # what a record says of its clip; not where or how fast
        return sorted(json.dumps({k: v for k, v in r.items() if k in ("key", "status", "stage", "reason")
                                  or k.startswith("score_")}, sort_keys=True)
                      for r in records if r["uri"] in inputs_here)

    two_nodes = pq.read_table(out / "manifest.parquet").to_pylist()
    assert rows(two_nodes) and rows(two_nodes) == rows(full_run["records"])
    keys = {r["key"] for r in two_nodes if r["status"] == "kept"}
    for suffix in ("json", "mp4", "flac"):
        single = _members(full_run["out"] / "shards", suffix)
        one = {name: data for name, data in single.items() if name.split(".", 1)[0] in keys}
        assert _members(out / "shards", suffix) == one and len(one) == len(keys), suffix


@needs_ffmpeg
def test_transcode_resizes_to_the_training_area(tmp_path: Path) -> None:
    from curation.config import ClipConfig, TranscodeConfig
    from ovi_pl.media.tools import ffprobe_json
    from curation.stages.transcode import TranscodeClips

    source = REAL_CLIPS[0]  # 1344x704
    video = next(s for s in ffprobe_json(source)["streams"] if s["codec_type"] == "video")
    row = {"key": "clip", "path": str(source), "start_s": 0.0, "status": "kept",
           "probe": {"has_audio": True, "width": int(video["width"]), "height": int(video["height"])}}
    stage = TranscodeClips(TranscodeConfig(target_area=128 * 224), ClipConfig(), str(tmp_path))
    (out,) = stage.process_batch([row])
    assert out["status"] == "kept", out
    # 1344x704 at a 28,672-pixel area keeps the aspect ratio with sides that are multiples of 32.
    assert (out["video"]["width"], out["video"]["height"]) == (224, 128)
    assert out["video"]["num_frames"] == 121


def reencode(source: Path, path: Path, *args: str) -> Path:
    """`source` through ffmpeg with `args` (a cut, filters, colour tags): H.264 at near-lossless quality, the
    audio copied."""
    from ovi_pl.media.tools import run_tool

    run_tool(["ffmpeg", "-v", "error", "-i", str(source), *args, "-c:v", "libx264", "-preset", "ultrafast", "-crf",
              "12", "-c:a", "copy", str(path)])
    return path


def probe_and_transcode(source: Path, work: Path) -> tuple[dict, dict]:
    """A source through the pipeline's discover, probe and transcode stages: (probed row, clip row)."""
    from curation.config import ClipConfig, ProbeConfig, TranscodeConfig
    from curation.stages.discover import DiscoverInputs
    from curation.stages.probe import ProbeInputs
    from curation.stages.transcode import TranscodeClips

    (row,) = DiscoverInputs([".mp4"]).process_batch([{"spec": str(source)}])
    (probed,) = ProbeInputs(ProbeConfig(), str(work / "downloads")).process_batch([row])
    transcode = TranscodeClips(TranscodeConfig(target_area=128 * 224, preset="ultrafast"), ClipConfig(),
                               str(work / "clips"))
    (clip,) = transcode.process_batch([{**probed, "key": source.stem, "start_s": 0.0}])
    assert clip["status"] == "kept", clip
    return probed, clip


# How a source can store its picture otherwise than a player shows it: (filters for the stored frames,
# metadata that tells players how to show them).
STORED_OTHERWISE = {
    # Phones store portrait video landscape with a quarter-turn in the metadata (and the reverse).
    "turned": ("transpose=clock", ["-metadata:s:v", "rotate=90"]),
    # DV, HDV and broadcast video store a wide picture in narrow pixels, which players stretch.
    "narrow_pixels": ("scale=iw*3/4:ih,setsar=4/3", []),
}


@needs_ffmpeg
@pytest.mark.parametrize("stored", sorted(STORED_OTHERWISE))
def test_a_source_stored_otherwise_than_shown_makes_the_clip_a_player_shows(tmp_path: Path, stored: str) -> None:
    """The clip must be what a player shows, at the display size's training area, not a crop of the stored
    frames (turned: a sideways strip; narrow pixels: everyone a quarter thinner)."""
    from ovi_pl.media.frames import iter_frames
    from ovi_pl.media.tools import run_tool

    stored_filters, metadata = STORED_OTHERWISE[stored]
    plain, other = tmp_path / "plain.mp4", tmp_path / f"{stored}.mp4"
    reencode(REAL_CLIPS[0], plain, "-t", "5.2")
    reencode(plain, tmp_path / "stored.mp4", "-vf", stored_filters)
    run_tool(["ffmpeg", "-v", "error", "-i", str(tmp_path / "stored.mp4"), "-c", "copy", *metadata, str(other)])
    sizes, clips = {}, {}
    for source in (plain, other):
        probed, clip = probe_and_transcode(source, tmp_path / source.stem)
        sizes[source.name] = (probed["probe"]["width"], probed["probe"]["height"],
                              clip["video"]["width"], clip["video"]["height"])
        clips[source.name] = next(iter_frames(clip["mp4_path"], pix_fmt="gray")).astype(float)
    width, height, clip_width, clip_height = sizes["plain.mp4"]
    assert width > height and clip_width > clip_height  # the sample clip is landscape
    assert sizes[other.name] == sizes["plain.mp4"]
    # The same picture either way, two encodes apart.
    assert np.abs(clips[other.name] - clips["plain.mp4"]).mean() < 4


@needs_ffmpeg
def test_an_interlaced_source_makes_a_clip_without_combing(tmp_path: Path) -> None:
    """Broadcast, DV and camcorder video is interlaced: each frame weaves two fields 1/50 s apart, which a
    plain transcode keeps as combed, ghosted edges on everything that moves. The clip must show what a
    progressive camera would have. The interlaced source is where an AVCHD camcorder leaves it on its card."""
    from curation.config import InputsConfig
    from curation.stages.discover import DiscoverInputs
    from ovi_pl.media.frames import iter_frames
    from ovi_pl.media.tools import run_tool

    still = tmp_path / "still.png"
    run_tool(["ffmpeg", "-v", "error", "-i", str(REAL_CLIPS[0]), "-frames:v", "1", "-vf", "scale=320:240", str(still)])

    def panning(path: Path, rate: int, filters: str, *codec: str) -> Path:
        """The sample picture panning sideways (6.4 px per 1/50 s), with a tone, in an MPEG transport stream as
        camcorders write (its video starts 21 ms after its sound; the clip keeps that)."""
        run_tool(["ffmpeg", "-v", "error", "-loop", "1", "-framerate", str(rate), "-i", str(still), "-f", "lavfi",
                  "-i", "sine=f=440:r=48000", "-t", "6", "-vf", filters, *codec, "-c:v", "libx264", "-preset",
                  "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-f", "mpegts",
                  str(path)])
        return path

    progressive = panning(tmp_path / "progressive.mts", 25, "scroll=horizontal=0.02")
    # 50 pictures a second woven into 25 interlaced frames, top field first, coded as interlaced H.264.
    card = tmp_path / "card"
    (card / "PRIVATE/AVCHD/BDMV/STREAM").mkdir(parents=True)
    interlaced = panning(card / "PRIVATE/AVCHD/BDMV/STREAM/00001.MTS", 50, "scroll=horizontal=0.01,"
                         "tinterlace=mode=interleave_top,setfield=tff", "-flags", "+ildct+ilme", "-x264opts", "tff=1")
    found = DiscoverInputs(InputsConfig(paths=[str(card)]).extensions).process_batch([{"spec": str(card)}])
    assert [Path(row["location"]).name for row in found] == ["00001.MTS"]  # the default extensions take it
    clips = {}
    for source in (progressive, interlaced):
        _, clip = probe_and_transcode(source, tmp_path / source.stem)
        clips[source.name] = np.stack(list(iter_frames(clip["mp4_path"], pix_fmt="gray"))).astype(float)
    # Measured: 1.8 deinterlaced, 6.2 when the fields are left woven.
    assert np.abs(clips["00001.MTS"] - clips["progressive.mts"]).mean() < 3


@needs_ffmpeg
@pytest.mark.parametrize("transfer", ["arib-std-b67", "smpte2084"])  # HLG (phones' HDR), PQ (HDR10)
def test_an_hdr_source_makes_an_sdr_clip_that_looks_like_it(tmp_path: Path, transfer: str) -> None:
    """Phones record HDR by default. Read as SDR, its 10-bit BT.2020 HLG or PQ frames come out dim and grey;
    the clip must be tone-mapped to BT.709 and say so."""
    from ovi_pl.media.frames import iter_frames
    from ovi_pl.media.tools import ffprobe_json

    sdr, hdr = tmp_path / "sdr.mp4", tmp_path / "hdr.mp4"
    reencode(REAL_CLIPS[0], sdr, "-t", "5.2", "-vf", "scale=640:-2")
    # The same picture graded HDR as BT.2408 places it: SDR's white at the HDR reference white, 203 cd/m2.
    reencode(sdr, hdr, "-vf", f"zscale=tin=bt709:pin=bt709:min=bt709:t={transfer}:p=bt2020:m=bt2020nc:r=tv:npl=203,"
             "format=yuv420p10le", "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc")
    clips = {}
    for source in (sdr, hdr):
        _, clip = probe_and_transcode(source, tmp_path / source.stem)
        clips[source.name] = np.stack(list(iter_frames(clip["mp4_path"], pix_fmt="rgb24"))).astype(float)
    video = next(s for s in ffprobe_json(clip["mp4_path"])["streams"] if s["codec_type"] == "video")
    assert (video["pix_fmt"], video["color_transfer"], video["color_primaries"]) == ("yuv420p", "bt709", "bt709")
    # Measured: 13.4 for both; read as SDR, 28.2 (HLG) and 50.5 (PQ).
    assert np.abs(clips["hdr.mp4"] - clips["sdr.mp4"]).mean() < 20
