"""Broken and odd inputs (issue 13): every name the user gives gets one record under that name, with a
reason that says what is wrong, and a failed input leaves no work files.

The corpus is made here with ffmpeg and the file system; one real pipeline run (run.py on an in-process
Ray cluster of 2 CPUs) takes all of it. Only the three good clips and one static one are cut and
transcoded; everything else is rejected from its name, its header or the packets of its last seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from curation.config import ConfigError
from curation.keys import clip_key, display_name, input_id
from curation.preflight import load_config

sys.path.insert(0, str(Path(__file__).parent))
from curation_media import _av, _ffmpeg  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

SIZE = "192x144"
SINE = "sine=frequency=440:sample_rate=44100"
CAPTION = "A colourful test pattern with a moving ball and counter. <AUDCAP>A steady 440 Hz tone.<ENDAUDCAP>"
NON_UTF8 = os.fsdecode(b"caf\xe9_clip.mp4")          # 'caf\udce9_clip.mp4': the bytes are not UTF-8
ODD_NAME = "it's a \"clip\" with spaces — ünïcödé.mp4"


def _moving(out: Path, seconds: float = 5.5, rate: int = 24, audio_s: float | None = None) -> Path:
    audio = SINE if audio_s is None else f"{SINE}:duration={audio_s}"
    args = _av(f"testsrc2=size={SIZE}:rate={rate}", audio, seconds)
    if audio_s is not None:
        args.remove("-shortest")  # the video runs on under the short audio
    return _ffmpeg(args, out)


def _truncate(source: Path, out: Path) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def _corrupt_moov(source: Path, out: Path) -> Path:
    """`source` with the content of its moov box (the index) overwritten; the box sizes stay intact."""
    data = bytearray(source.read_bytes())
    at = data.index(b"moov") - 4
    size = int.from_bytes(data[at:at + 4], "big")
    data[at + 8:at + size] = bytes(size - 8)
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The broken and odd inputs: a folder named in inputs.paths and a manifest; what each must end as."""
    root = tmp_path_factory.mktemp("inputs")
    media = root / "media"
    media.mkdir()
    good = _moving(media / "good.mp4")
    end_moov = _ffmpeg(["-i", str(good), "-c", "copy"], media / "moov_at_end.mp4")
    front_moov = _ffmpeg(["-i", str(good), "-c", "copy", "-movflags", "+faststart"], media / "moov_at_front.mp4")
    mkv = _ffmpeg(["-i", str(good), "-c", "copy"], media / "whole.mkv")
    shutil.copy(good, media / NON_UTF8)
    shutil.copy(good, media / ODD_NAME)
    listed = {  # manifest entries: name -> (path as listed, caption, expected (stage, reason) or None: kept)
        "good": (str(good), CAPTION, None),
        "non_utf8": (str(media / NON_UTF8), CAPTION, None),
        "odd_name": (str(media / ODD_NAME), CAPTION, None),
        "static": (str(_ffmpeg(_av(f"color=c=teal:size={SIZE}:rate=24", SINE, 5.5), media / "static.mp4")), CAPTION,
                   ("motion", "static")),
        "zero_bytes": (str(_touch(media / "zero.mp4")), None, ("probe", "empty_file")),
        "corrupt_moov": (str(_corrupt_moov(front_moov, media / "corrupt_moov.mp4")), None,
                         ("probe", "corrupt_container")),
        "truncated_front_moov": (str(_truncate(front_moov, media / "cut_front.mp4")), None, ("probe", "truncated")),
        "truncated_end_moov": (str(_truncate(end_moov, media / "cut_end.mp4")), None, ("probe", "truncated")),
        "truncated_mkv": (str(_truncate(mkv, media / "cut.mkv")), None, ("probe", "truncated")),
        "audio_only": (str(_ffmpeg(["-f", "lavfi", "-i", SINE, "-t", "3", "-c:a", "aac"], media / "sound.mp4")), None,
                       ("probe", "no_video_stream")),
        "no_audio": (str(_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=24", "-t", "5.5", "-c:v", "libx264",
                                  "-preset", "ultrafast", "-pix_fmt", "yuv420p"], media / "mute.mp4")), None,
                     ("probe", "no_audio_stream")),
        "short_audio": (str(_moving(media / "short_audio.mp4", 5.0, audio_s=1.0)), None, ("probe", "short_audio")),
        "fps_2": (str(_moving(media / "two_fps.mp4", 6.0, rate=2)), None, ("probe", "low_frame_rate")),
        "huge": (str(_ffmpeg(_av("color=c=gray:size=8448x64:rate=24", SINE, 1.0), media / "huge.mp4")), None,
                 ("probe", "resolution_too_large")),
        "dir_named_mp4": (str(_mkdir(media / "x.mp4")), None, ("discover", "is_directory")),
        "dangling_link": (str(_link(media / "gone.mp4", media / "dangling.mp4")), None,
                          ("discover", "dangling_symlink")),
        "duplicate": (str(good), CAPTION, ("discover", "duplicate")),
        "missing": ("not/there.mp4", None, ("discover", "not_found")),
        "missing_file_url": (f"file://{media}/nothing.mp4", None, ("discover", "not_found")),
        "missing_memory_url": ("memory://bucket/none.mp4", None, ("probe", "not_found")),
        "unknown_scheme_url": ("nosuchscheme://bucket/clip.mp4", None, ("probe", "unreachable")),
    }
    folder = root / "folder"  # searched recursively: every entry with a media extension gets a record
    (folder / "deep").mkdir(parents=True)
    (folder / "notes.txt").write_text("not media, no record")
    (folder / "random.mp4").write_bytes(os.urandom(20_000))
    _touch(folder / "deep" / "empty.MOV")
    _link(folder / "nowhere.mkv", folder / "deep" / "dangling.mkv")
    _mkdir(folder / "deep" / "clips.webm")
    found = {"random": ("probe", "not_media"), "empty": ("probe", "empty_file"),
             "dangling": ("discover", "dangling_symlink"), "clips": ("discover", "is_directory")}
    manifest = root / "manifest.jsonl"
    # json.dumps writes the non-UTF-8 name's bytes as \udcXX escapes, as any Python-made manifest would.
    manifest.write_text("".join(json.dumps({"path": p, **({"caption": c} if c else {})}) + "\n"
                                for p, c, _ in listed.values()))
    expected = {name: reason for name, (_, _, reason) in listed.items()}
    return {"root": root, "media": media, "folder": folder, "manifest": manifest, "listed": listed,
            "expected": expected, "found": found}


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _link(target: Path, link: Path) -> Path:
    link.symlink_to(target)
    return link


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _config(corpus: dict, out: Path) -> dict:
    return {"inputs": {"paths": [str(corpus["folder"])], "manifest": str(corpus["manifest"])},
            "output": {"dir": str(out)}, "ray": {"num_cpus": 2}, "transcode": {"preset": "ultrafast"},
            "filters": {"area": {"min_area": 160 * 120}}}


@pytest.fixture(scope="module")
def run(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("inputs_run") / "out"
    cfg = _write_config(out.parent / "cfg.yaml", _config(corpus, out))
    proc = subprocess.run([PYTHON, "curation/run.py", "--config", str(cfg)], cwd=REPO, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()[-3000:]
    return {"out": out, "cfg": cfg, "stdout": proc.stdout.decode(),
            "records": pq.read_table(out / "manifest.parquet").to_pylist()}


def _listed_count(corpus: dict) -> int:
    return len(corpus["listed"]) + len(corpus["found"])


def test_every_named_input_gets_one_record_under_its_name(corpus: dict, run: dict) -> None:
    records = run["records"]
    assert len({r["input_id"] for r in records}) == _listed_count(corpus), "one input per name given"
    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["input_id"], []).append(r)
    media, folder = corpus["media"], corpus["folder"]
    names = {r["uri"] for r in records}
    # Names as given, absolute, links not resolved; non-UTF-8 bytes as readable escapes.
    assert display_name(str(media / NON_UTF8)) in names and str(media / "caf\\xe9_clip.mp4") in names
    assert str(media / ODD_NAME) in names and str(media / "dangling.mp4") in names
    assert str(folder / "deep" / "dangling.mkv") in names and str(REPO / "not/there.mp4") not in names
    assert str(corpus["manifest"].parent / "not/there.mp4") in names, "relative manifest paths: next to the manifest"
    assert f"{media}/nothing.mp4" in names and "memory://bucket/none.mp4" in names
    assert sum(r["uri"] == str(media / "good.mp4") for r in records) == 2, "the duplicate line has its own record"
    for rows in by_id.values():
        if rows[0]["status"] != "kept" and rows[0]["record_type"] == "input":
            assert len(rows) == 1, rows


def test_each_input_ends_for_its_reason(corpus: dict, run: dict) -> None:
    by_uri: dict[str, list[tuple]] = {}
    for r in run["records"]:
        by_uri.setdefault(r["uri"], []).append((r["status"], r["stage"], r["reason"], r["detail"]))
    for name, (listed, _, expected) in corpus["listed"].items():
        if name in ("duplicate", "good"):
            continue
        uri = listed if "://" in listed and not listed.startswith("file://") else display_name(
            os.path.abspath(os.path.join(corpus["manifest"].parent, listed.removeprefix("file://"))))
        got = by_uri[uri]
        want = ("kept", None, None) if expected is None else ("rejected", *expected)
        assert [g[:3] for g in got] == [want], f"{name}: {got}"
        if expected is not None:
            assert got[0][3], f"{name}: a rejection says what was found"
    good = sorted(g[:3] for g in by_uri[str(corpus["media"] / "good.mp4")])
    assert good == [("kept", None, None), ("rejected", "discover", "duplicate")]
    for name, expected in corpus["found"].items():
        (got,) = [v for k, v in by_uri.items() if Path(k).stem == name and k.startswith(str(corpus["folder"]))]
        assert [g[:3] for g in got] == [("rejected", *expected)], f"{name}: {got}"
    details = {r["reason"]: r["detail"] for r in run["records"] if r["detail"]}
    assert "cut off" in details["truncated"] and "moov" in details["corrupt_container"]
    assert "0 bytes" in details["empty_file"] and "(20.0%)" in details["short_audio"]
    assert "probe.min_fps" in details["low_frame_rate"]
    assert "listed again at manifest.jsonl:17, already listed at manifest.jsonl:1" in details["duplicate"]


def test_good_clips_with_odd_names_are_kept_and_work_files_are_gone(corpus: dict, run: dict) -> None:
    out = run["out"]
    kept = [r for r in run["records"] if r["status"] == "kept"]
    assert sorted(Path(r["uri"]).name for r in kept) == sorted(["good.mp4", "caf\\xe9_clip.mp4", ODD_NAME])
    non_utf8 = display_name(str(corpus["media"] / NON_UTF8))
    assert clip_key(non_utf8, 0) in {r["key"] for r in kept}
    assert not [p for p in (out / "_work").rglob("*") if p.is_file()], "no work files of any input stay behind"
    markers = [p.read_bytes() for p in (out / "_state" / "done").glob("*.json")]
    assert len(markers) == _listed_count(corpus)
    assert all(b"\\udc" not in m for m in markers), "markers hold the readable name, not surrogate escapes"
    assert any(b"caf\\\\xe9_clip" in m for m in markers)
    assert "3 kept" in run["stdout"]


def test_ids_are_stable_and_check_counts_every_input(corpus: dict, run: dict) -> None:
    from curation.pipeline import discover

    config = load_config(run["cfg"])
    first, second = discover(config), discover(config)
    assert [r["input_id"] for r in first] == [r["input_id"] for r in second]
    assert {r["input_id"] for r in first} == {r["input_id"] for r in run["records"]}
    assert input_id(str(corpus["media"] / NON_UTF8)) in {r["input_id"] for r in first}
    proc = subprocess.run([PYTHON, "curation/run.py", "--config", str(run["cfg"]), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"config OK; {_listed_count(corpus)} inputs" in proc.stdout
    assert "rejected at discovery: duplicate" in proc.stdout


def test_missing_config_paths_fail_together_before_any_work(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = {**_config(corpus, out), "inputs": {"paths": [str(corpus["folder"]), "typo/one", str(tmp_path / "two")]}}
    cfg = _write_config(tmp_path / "cfg.yaml", data)
    for extra in ([], ["--check"]):
        proc = subprocess.run([PYTHON, "curation/run.py", "--config", str(cfg), *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "typo/one" in proc.stderr and str(tmp_path / "two") in proc.stderr
        assert "fix inputs.paths" in proc.stderr and not out.exists()


def test_manifest_captions_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    lines = [json.dumps({"path": str(video), "caption": CAPTION}),
             json.dumps({"path": str(video), "caption": "A test pattern and a steady tone."}),
             json.dumps({"path": str(video), "caption": "A test pattern. Audio: a steady tone."}),
             json.dumps({"path": str(video), "caption": "He says <S>hi. <AUDCAP>A voice.<ENDAUDCAP>"}),
             json.dumps({"path": str(video)}),
             "{not json",
             json.dumps({"caption": CAPTION})]
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    cfg = _write_config(tmp_path / "cfg.yaml", {"inputs": {"manifest": str(manifest)},
                                                "output": {"dir": str(tmp_path / "out")}})
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    message = str(err.value)
    for n in (2, 3, 4, 6, 7):
        assert f"list.jsonl:{n}: " in message, (n, message)
    for n in (1, 5):
        assert f"list.jsonl:{n}: " not in message, (n, message)
    assert "no audio description" in message and "captions.style is audcap" in message and "unclosed <S>" in message
    proc = subprocess.run([PYTHON, "curation/run.py", "--config", str(cfg), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "list.jsonl:2: caption has no audio description" in proc.stderr, proc.stderr
    # The style setting decides which audio description is right.
    with pytest.raises(ConfigError) as err:
        load_config(cfg, {"captions.style": "audio_prefix"})
    assert "list.jsonl:3: " not in str(err.value) and "list.jsonl:1: " in str(err.value)
    # A captioner replaces captions that fail; then only unreadable lines stop the run.
    with pytest.raises(ConfigError) as err:
        load_config(cfg, {"captions.enabled": True, "captions.endpoint.base_url": "http://127.0.0.1:9/v1"})
    assert "list.jsonl:2: " not in str(err.value) and "list.jsonl:6: not valid JSON" in str(err.value)


def test_urls_in_config_paths_that_cannot_be_listed_get_a_record(tmp_path: Path) -> None:
    import fsspec

    from curation.stages.discover import DiscoverInputs, InputNotFoundError

    with fsspec.open("memory://inputs-test/videos/a.mp4", "wb") as f:
        f.write(b"x")
    rows = DiscoverInputs([".mp4"]).process_batch([{"spec": "nosuchscheme://bucket/videos"},
                                                   {"spec": "memory://inputs-test/videos"}])
    assert [(r["uri"], r["status"], r.get("reason")) for r in rows] == [
        ("nosuchscheme://bucket/videos", "rejected", "unreachable"), ("memory:///inputs-test/videos/a.mp4", "kept", None)]
    assert "check the URL" in rows[0]["detail"]
    with pytest.raises(InputNotFoundError, match="memory://inputs-test/nothing"):
        DiscoverInputs([".mp4"]).process_batch([{"spec": "memory://inputs-test/nothing"}])


def test_text_and_csv_manifests_keep_non_utf8_bytes(tmp_path: Path) -> None:
    from curation.stages.discover import DiscoverInputs, read_manifest

    (tmp_path / NON_UTF8).write_bytes(b"x")
    (tmp_path / "list.txt").write_bytes(b"# raw bytes\n" + os.fsencode(NON_UTF8) + b"\n")
    (tmp_path / "list.csv").write_bytes(b"\xef\xbb\xbfpath,caption\n\"" + os.fsencode(NON_UTF8) + b"\",\n")
    for manifest in ("list.txt", "list.csv"):
        (row,) = DiscoverInputs([".mp4"], strict=False).process_batch(read_manifest(tmp_path / manifest))
        assert row["status"] == "kept" and row["location"] == str(tmp_path / NON_UTF8), row
        assert row["uri"] == str(tmp_path / "caf\\xe9_clip.mp4")
        assert row["input_id"] == input_id(str(tmp_path / NON_UTF8))


def test_transcode_leaves_no_files_when_it_fails(corpus: dict, tmp_path: Path) -> None:
    from curation.config import ClipConfig, TranscodeConfig
    from curation.stages.transcode import TranscodeClips

    row = {"key": "k-00000", "path": str(corpus["media"] / "good.mp4"), "status": "kept",
           "probe": {"has_audio": True, "width": 192, "height": 144}}
    clips = tmp_path / "clips"
    # The source ends 2.5 s into the clip: too few frames.
    (short,) = TranscodeClips(TranscodeConfig(preset="ultrafast"), ClipConfig(), str(clips)).process_batch(
        [{**row, "start_s": 3.0}])
    assert (short["status"], short["reason"]) == ("rejected", "short_clip") and not list(clips.iterdir())
    # ffmpeg killed by the timeout part-way: the error propagates (the row is quarantined), the files go.
    stage = TranscodeClips(TranscodeConfig(preset="ultrafast", timeout_s=0.05), ClipConfig(), str(clips))
    with pytest.raises(Exception, match="did not finish"):
        stage.process_batch([{**row, "start_s": 0.0}])
    assert not list(clips.iterdir())


def test_collector_removes_work_files_of_rows_that_are_not_kept(tmp_path: Path) -> None:
    from curation.config import CurationConfig
    from curation.keys import audio_segment_key
    from curation.pipeline import OutputCollector, RunPaths

    paths = RunPaths(tmp_path / "out")
    config = CurationConfig.model_validate({"inputs": {"paths": ["x"]}})
    collector = OutputCollector(paths, config, total_inputs=2)
    clips = paths.work / "clips"
    clips.mkdir(parents=True)
    for name in ("c-00000.mp4", "c-00000.flac", f"{audio_segment_key('/d/s.mp4', 0)}.flac", "other.flac"):
        (clips / name).write_bytes(b"x")
    # A clip quarantined by a stage after transcode: the row does not name its files, its key does.
    collector.add({"input_id": "c", "uri": "/d/c.mp4", "record_type": "clip", "key": "c-00000", "num_clips": 1,
                   "status": "quarantined", "rejected_by": "motion", "reason": "error", "scores": {}})
    # An input quarantined by audio_segments after writing a segment.
    collector.add({"input_id": "s", "uri": "/d/s.mp4", "record_type": "input", "status": "quarantined",
                   "rejected_by": "audio_segments", "reason": "error", "scores": {}})
    assert sorted(p.name for p in clips.iterdir()) == ["other.flac"]
    assert collector.markers.done_ids() == {"c", "s"}
