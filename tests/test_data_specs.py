"""data_specs: the sample schema, its JSON Schema export, and the shard validator on real tar shards."""
from __future__ import annotations

import copy
import csv
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import SAMPLE_MEDIA
import soundfile
import webdataset as wds

from data_specs import (SCHEMA_FILE, SCHEMA_VERSION, SampleMetaError, check_caption_tags, parse_sample_meta,
                        render_schema, sample_json_schema, validate_shards)

MEDIA = SAMPLE_MEDIA  # examples/media, shipped with the repository
PROMPTS_CSV = MEDIA / "ovi_example_prompts_t2v.csv"
# 1280x704, 24 fps, 122 frames, AAC audio track.
MP4_BYTES = (MEDIA / "kitchen_two_women_704x1280.mp4").read_bytes()
NUM_FRAMES = 122
DURATION_S = NUM_FRAMES / 24
REPO = Path(__file__).resolve().parents[1]


def prompts() -> list[str]:
    with PROMPTS_CSV.open(newline="", encoding="utf-8") as f:
        return [row["text_prompt"] for row in csv.DictReader(f)]


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def audio_bytes(fmt: str, seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    samples = np.zeros((round(seconds * rate), channels), dtype=np.float32)
    samples[:, 0] = 0.1 * np.sin(np.arange(len(samples)) * 2 * np.pi * 440 / rate)
    soundfile.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


FLAC_BYTES = audio_bytes("FLAC", DURATION_S)
WAV_BYTES = audio_bytes("WAV", 3.5)
# 122 frames -> (122 - 1) // 4 + 1 = 31 latent frames; 704x1280 -> 44x80.
VIDEO_LATENTS = np.zeros((48, 31, 44, 80), dtype=np.float16)


def av_meta(key: str, caption: str | None = None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "kind": "audio_video",
        "source": {"uri": "s3://raw/kitchen.mp4", "start_s": 12.0, "end_s": 12.0 + DURATION_S,
                   "fps": 29.97, "width": 1920, "height": 1080},
        "media": {"duration_s": DURATION_S,
                  "video": {"fps": 24, "num_frames": NUM_FRAMES, "width": 1280, "height": 704},
                  "audio": {"sample_rate": 16000, "channels": 1}},
        "caption": caption if caption is not None else prompts()[1],
        "transcript": {
            "language": "en",
            "words": [{"word": "AI", "start_s": 0.4, "end_s": 0.7, "speaker": "SPEAKER_00", "score": 0.93},
                      {"word": "declares", "start_s": 0.7, "end_s": 1.2, "speaker": "SPEAKER_00"}],
            "segments": [{"text": "AI declares", "start_s": 0.4, "end_s": 1.2, "speaker": "SPEAKER_00"}],
        },
        "scores": {"mean_volume_db": -23.5, "motion": 2.1, "aesthetic": 5.4, "syncnet_offset": 1.0,
                   "syncnet_confidence": 6.2, "area": 1920.0 * 1080.0, "num_faces": 2.0},
        "latents": [],
    }


def audio_only_meta(key: str) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "kind": "audio_only",
        "source": {"uri": "emilia/en/0001.mp3", "start_s": 3.0, "end_s": 6.5},
        "media": {"duration_s": 3.5, "audio": {"sample_rate": 16000, "channels": 1}},
        "caption": "A woman says <S>Good morning, everyone.<E> Audio: calm female speech, light room tone.",
        "transcript": {"language": "en", "words": [{"word": "Good", "start_s": 0.1, "end_s": 0.3}]},
        "scores": {"mean_volume_db": -21.0},
    }


def declare(meta: dict, name: str, array: np.ndarray) -> None:
    meta.setdefault("latents", []).append({"name": name, "dtype": str(array.dtype), "shape": list(array.shape)})


def av_sample(key: str, caption: str | None = None, flac: bool = True) -> dict:
    """A complete audio_video sample: real mp4, flac, and audio latents + text embedding."""
    meta = av_meta(key, caption)
    audio_latents = np.random.default_rng(0).standard_normal((159, 20)).astype(np.float32)
    text = np.zeros((37, 4096), dtype=np.float16)
    declare(meta, "audio_latents.npy", audio_latents)
    declare(meta, "text_embedding.npy", text)
    sample = {"__key__": key, "mp4": MP4_BYTES, "audio_latents.npy": npy_bytes(audio_latents),
              "text_embedding.npy": npy_bytes(text)}
    if flac:
        sample["flac"] = FLAC_BYTES
    return with_json(sample, meta)


def audio_only_sample(key: str) -> dict:
    return with_json({"__key__": key, "wav": WAV_BYTES}, audio_only_meta(key))


def with_json(sample: dict, meta: dict) -> dict:
    sample["json"] = json.dumps(meta).encode()
    return sample


def write_shard(path: Path, samples: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def problems_of(report, key: str) -> str:
    return "\n".join(p for bad in report.bad_samples if bad.key == key for p in bad.problems)


@pytest.fixture
def good_shard(tmp_path: Path) -> Path:
    full = av_sample("clip_000001")
    meta = json.loads(full["json"])
    declare(meta, "video_latents.npy", VIDEO_LATENTS)
    full["video_latents.npy"] = npy_bytes(VIDEO_LATENTS)
    with_json(full, meta)
    return write_shard(tmp_path / "good" / "shard-000000.tar",
                       [full, av_sample("clip_000002", flac=False), audio_only_sample("speech_000003")])


# --- the validator on real shards -------------------------------------------------------------------


def test_good_shard_is_accepted_and_reads_back_with_webdataset(good_shard: Path) -> None:
    report = validate_shards([good_shard.parent])
    assert report.ok, report.to_dict()
    assert report.num_samples == 3
    assert report.kinds == {"audio_video": 2, "audio_only": 1}
    # The contract holds for the reader training uses: same keys, same members, parseable json.
    samples = list(wds.WebDataset(str(good_shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["clip_000001", "clip_000002", "speech_000003"]
    assert {"mp4", "flac", "json", "video_latents.npy"} <= set(samples[0])
    assert parse_sample_meta(samples[0]["json"]).media.video.num_frames == NUM_FRAMES


def test_missing_members_are_named_by_key(tmp_path: Path) -> None:
    no_mp4 = av_sample("no_mp4")
    del no_mp4["mp4"]
    no_audio = audio_only_sample("no_audio")
    del no_audio["wav"]
    no_json = av_sample("no_json")
    del no_json["json"]
    declared_missing = av_sample("latent_missing")
    del declared_missing["text_embedding.npy"]
    shard = write_shard(tmp_path / "s.tar", [no_mp4, no_audio, no_json, declared_missing, av_sample("fine")])
    report = validate_shards([shard])
    assert not report.ok
    assert sorted(report.bad_keys()) == ["latent_missing", "no_audio", "no_json", "no_mp4"]
    assert "missing member .mp4" in problems_of(report, "no_mp4")
    assert "missing audio member" in problems_of(report, "no_audio")
    assert "missing member .json" in problems_of(report, "no_json")
    assert "missing member .text_embedding.npy" in problems_of(report, "latent_missing")


BAD_CAPTIONS = {
    "unclosed_speech": "A man says <S>we fight back. <AUDCAP>Male speech.<ENDAUDCAP>",
    "audcap_not_last": "A man nods. <AUDCAP>Male speech.<ENDAUDCAP> He says <S>hello<E>.",
    "two_audcaps": "A man says <S>hello<E>. <AUDCAP>Male speech.<ENDAUDCAP> <AUDCAP>Room tone.<ENDAUDCAP>",
}


def test_bad_caption_tag_structure_is_rejected_per_key(tmp_path: Path) -> None:
    samples = [av_sample(key, caption=caption) for key, caption in BAD_CAPTIONS.items()]
    shard = write_shard(tmp_path / "s.tar", samples + [av_sample("fine")])
    report = validate_shards([shard])
    assert sorted(report.bad_keys()) == sorted(BAD_CAPTIONS)
    assert "unclosed <S>" in problems_of(report, "unclosed_speech")
    assert "after <AUDCAP>" in problems_of(report, "audcap_not_last")
    assert "2 <AUDCAP> tags" in problems_of(report, "two_audcaps")
    assert all(problems_of(report, key).startswith("json: caption: bad caption tags") for key in BAD_CAPTIONS)


def test_npy_members_must_match_their_declared_dtype_and_shape(tmp_path: Path) -> None:
    wrong_dtype = av_sample("wrong_dtype")
    wrong_dtype["audio_latents.npy"] = npy_bytes(np.zeros((159, 20), dtype=np.float64))
    wrong_shape = av_sample("wrong_shape")
    wrong_shape["text_embedding.npy"] = npy_bytes(np.zeros((38, 4096), dtype=np.float16))
    object_array = av_sample("object_array")
    object_array["audio_latents.npy"] = npy_bytes(np.array([{"a": 1}], dtype=object))
    undeclared = av_sample("undeclared")
    undeclared["extra_latents.npy"] = npy_bytes(np.zeros(3, dtype=np.float32))
    bad_declaration = av_sample("bad_declaration")
    meta = json.loads(bad_declaration["json"])
    meta["latents"][0]["shape"] = [159, 16]  # audio latents have 20 channels
    with_json(bad_declaration, meta)
    shard = write_shard(tmp_path / "s.tar",
                        [wrong_dtype, wrong_shape, object_array, undeclared, bad_declaration, av_sample("fine")])
    report = validate_shards([shard])
    assert sorted(report.bad_keys()) == ["bad_declaration", "object_array", "undeclared", "wrong_dtype", "wrong_shape"]
    assert "has dtype float64, the json declares float32" in problems_of(report, "wrong_dtype")
    assert "has shape [38, 4096], the json declares [37, 4096]" in problems_of(report, "wrong_shape")
    assert "allow_pickle=False" in problems_of(report, "object_array")
    assert "not declared in the json 'latents'" in problems_of(report, "undeclared")
    assert "axis C is 16, expected 20" in problems_of(report, "bad_declaration")


def test_video_latents_must_fit_the_clip_resolution(tmp_path: Path) -> None:
    sample = av_sample("half_res")
    meta = json.loads(sample["json"])
    small = np.zeros((48, 31, 22, 40), dtype=np.float16)
    declare(meta, "video_latents.npy", small)
    sample["video_latents.npy"] = npy_bytes(small)
    report = validate_shards([write_shard(tmp_path / "s.tar", [with_json(sample, meta)])])
    assert report.bad_keys() == ["half_res"]
    assert "expected [48, 31, 44, 80]" in problems_of(report, "half_res")


@pytest.mark.parametrize("ext", ["pth", "pt", "pkl", "pickle"])
def test_pickle_members_are_refused(tmp_path: Path, ext: str) -> None:
    sample = av_sample("has_pickle")
    sample[ext] = pickle.dumps({"weights": [1, 2, 3]})
    report = validate_shards([write_shard(tmp_path / "s.tar", [sample, av_sample("fine")])])
    assert report.bad_keys() == ["has_pickle"]
    assert f"pickle member .{ext} refused" in problems_of(report, "has_pickle")


def test_media_headers_are_checked_against_the_json(tmp_path: Path) -> None:
    wrong_size = av_sample("wrong_size")
    meta = json.loads(wrong_size["json"])
    meta["media"]["video"]["width"] = 1344
    with_json(wrong_size, meta)
    stereo_44k = av_sample("stereo_44k")
    stereo_44k["flac"] = audio_bytes("FLAC", DURATION_S, rate=44100, channels=2)
    not_mp4 = av_sample("not_mp4")
    not_mp4["mp4"] = b"\x00" * 64
    shard = write_shard(tmp_path / "s.tar", [wrong_size, stereo_44k, not_mp4])
    report = validate_shards([shard])
    assert sorted(report.bad_keys()) == ["not_mp4", "stereo_44k", "wrong_size"]
    assert "is 1280x704, the json says 1344x704" in problems_of(report, "wrong_size")
    assert "44100 Hz" in problems_of(report, "stereo_44k") and "2 channels" in problems_of(report, "stereo_44k")
    assert "not an MP4 file" in problems_of(report, "not_mp4")


def test_keys_with_dots_and_repeated_keys_are_reported(tmp_path: Path) -> None:
    dotted = av_sample("clip.v2")
    first = write_shard(tmp_path / "a" / "0.tar", [dotted, av_sample("dup")])
    write_shard(tmp_path / "a" / "1.tar", [av_sample("dup")])
    report = validate_shards([first.parent])
    assert report.num_samples == 3
    # WebDataset reads "clip.v2.mp4" as key "clip", member "v2.mp4".
    assert "key 'clip.v2' contains a dot" in problems_of(report, "clip")
    assert any(b.key == "dup" and "also used in shard" in b.problems[0] for b in report.bad_samples)
    assert [b.key for b in report.bad_samples].count("dup") == 1


def test_unreadable_tar_is_a_shard_error(tmp_path: Path, good_shard: Path) -> None:
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good_shard.read_bytes()[: 3 * 512 + 100])
    report = validate_shards([truncated])
    assert not report.ok
    assert report.shard_errors and "cannot read the tar" in report.shard_errors[0].problem
    with pytest.raises(FileNotFoundError, match="no such shard"):
        validate_shards([tmp_path / "missing"])


# --- captions ---------------------------------------------------------------------------------------


def test_all_example_prompts_pass_the_tag_check() -> None:
    captions = prompts()
    assert len(captions) == 12
    for caption in captions:
        assert check_caption_tags(caption) == [], caption


@pytest.mark.parametrize("caption, fragment", [
    ("He says <S>hi<E> <AUDCAP>speech", "unclosed <AUDCAP>"),
    ("He says hi<E>. <AUDCAP>speech<ENDAUDCAP>", "<E> at char 10 closes no <S>"),
    ("He says <S>a <S>b<E>. <AUDCAP>speech<ENDAUDCAP>", "spans do not nest"),
    ("He says <S> <E>. <AUDCAP>speech<ENDAUDCAP>", "empty"),
    ("He says <s>hi</s>. <AUDCAP>speech<ENDAUDCAP>", "malformed tag '<s>'"),
    ("He says <S>hi<E>. <AUDCAP>speech<ENDAUDCAP> The end.", "must end the caption"),
    ("He says <S>hi<E>.", "no audio description"),
    ("Audio: wind. He says <S>hi<E>.", "comes after 'Audio:'"),
    ("He says <S>hi<E>. Audio: wind. Audio: rain.", "'Audio:' appears 2 times"),
])
def test_tag_check_names_each_problem(caption: str, fragment: str) -> None:
    problems = check_caption_tags(caption)
    assert any(fragment in p for p in problems), problems


def test_audio_prefix_style_is_accepted() -> None:
    assert check_caption_tags("A woman says <S>Audio: check<E> to the room. Audio: clear female speech.") == []


# --- the json model ---------------------------------------------------------------------------------


def test_schema_version_rules() -> None:
    meta = av_meta("k")
    assert parse_sample_meta(meta).schema_version == SCHEMA_VERSION
    for version, fragment in [("2.0", "major version 2"), ("1.9", "newer than"), ("one", "MAJOR.MINOR")]:
        with pytest.raises(SampleMetaError, match=fragment):
            parse_sample_meta({**meta, "schema_version": version})
    with pytest.raises(SampleMetaError, match="schema_version is missing"):
        parse_sample_meta({k: v for k, v in meta.items() if k != "schema_version"})


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(extra_field=1), "extra_field: Extra inputs are not permitted"),
    (lambda m: m.update(key="a.b"), "key: String should match pattern"),
    (lambda m: m["media"]["audio"].update(sample_rate=44100), "media.audio.sample_rate: Input should be 16000"),
    (lambda m: m["media"].update(duration_s=10.0), "does not match video.num_frames / fps"),
    (lambda m: m["source"].update(end_s=1.0), "must be greater than source.start_s"),
    (lambda m: m["scores"].update(motion=float("nan")), "scores.motion"),
    (lambda m: m["transcript"]["words"].reverse(), "sort them by start_s"),
    (lambda m: m.update(kind="video_only"), "kind"),
])
def test_model_rejects_bad_fields(edit, fragment: str) -> None:
    meta = copy.deepcopy(av_meta("k"))
    edit(meta)
    with pytest.raises(SampleMetaError) as info:
        parse_sample_meta(meta)
    assert any(fragment in p for p in info.value.problems), \
        info.value.problems


# --- JSON Schema export -----------------------------------------------------------------------------


def test_shipped_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), \
        "data_specs/sample.schema.json is stale: run `python -m data_specs schema -o data_specs/sample.schema.json`"


def test_json_schema_accepts_good_and_rejects_bad_json() -> None:
    validator = jsonschema.Draft202012Validator(sample_json_schema())
    validator.validate(av_meta("k"))
    validator.validate(audio_only_meta("k"))
    with_video = audio_only_meta("k")
    with_video["media"]["video"] = {"fps": 24, "num_frames": 121, "width": 1280, "height": 704}
    assert not validator.is_valid(with_video)
    assert not validator.is_valid({k: v for k, v in av_meta("k").items() if k != "caption"})
    assert not validator.is_valid({**av_meta("k"), "schema_version": "2.0"})


# --- the command line -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_specs", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_cli_validate_exit_codes_and_json(tmp_path: Path, good_shard: Path) -> None:
    ok = run_cli("validate", str(good_shard.parent))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 samples in 1 shards, 0 bad" in ok.stdout

    bad_shard = write_shard(tmp_path / "bad" / "0.tar",
                            [av_sample("two_audcaps", caption=BAD_CAPTIONS["two_audcaps"]), av_sample("fine")])
    bad = run_cli("validate", str(bad_shard), "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["num_samples"] == 2 and report["num_bad"] == 1
    assert report["bad_samples"][0]["key"] == "two_audcaps"

    missing = run_cli("validate", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such shard" in missing.stderr


def test_cli_schema_prints_the_shipped_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(result.stdout)["x-schema-version"] == SCHEMA_VERSION


# --- the claims the docs make about scores ----------------------------------------------------------------


def test_every_well_known_score_is_written_by_a_curation_stage() -> None:
    """WELL_KNOWN_SCORES (and SPEC.md's list) documents what curation records: a name no stage writes, like
    the DNSMOS score that was listed without anything computing it, would be a claim that does not hold."""
    import re

    from data_specs import WELL_KNOWN_SCORES

    stages = "\n".join(p.read_text() for p in sorted((REPO / "curation" / "stages").glob("*.py")))
    unwritten = [name for name in WELL_KNOWN_SCORES if not re.search(rf"\b{name}=|[\"']{name}[\"']:", stages)]
    assert unwritten == [], f"no curation stage writes {unwritten}"
    spec = (REPO / "data_specs" / "SPEC.md").read_text()
    assert all(f"`{name}`" in spec for name in WELL_KNOWN_SCORES) and "dnsmos" not in spec.lower()


def test_spec_recipe_groups_samples_by_face_count(good_shard: Path) -> None:
    """The face-count grouping code in SPEC.md runs as printed on a shard."""
    spec = (REPO / "data_specs" / "SPEC.md").read_text()
    section = spec.split("### Balancing by face count", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {"shards": [str(good_shard)]}
    exec(code, namespace)  # noqa: S102 - our own documentation
    assert dict(namespace["groups"]) == {2: ["clip_000001", "clip_000002"], -1: ["speech_000003"]}
