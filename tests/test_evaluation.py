"""Evaluation of generated clips, each score computed by the product's own scorer from mp4 files written by
ffmpeg: Sync-C/D through `python -m ovi_pl evaluate` with SyncNet replaced by a stand-in network with a known
distance curve (sync_stubs.IndexSyncNet) on copies of a clip with the audio shifted by known offsets; CLIP
(models environment) and CLAP on tiny models of the real architectures, fitted here to pair a few colours and
sounds with their names, ranking the matching caption above mismatched ones."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import SAMPLE_MEDIA, models_python
from ovi_pl.cli import main as ovi_pl_main
from ovi_pl.evaluation import audio_text, visual_text
from ovi_pl.evaluation.sync import load_sync_scorer
from ovi_pl.sync.faces import Box, StaticBoxes

sys.path.insert(0, str(Path(__file__).parent))
from sync_stubs import (IndexSyncNet, expected_result, index_tone, index_video, windows,  # noqa: E402
                        yunet_onnx)

FPS = 25
PROMPT = ("A man on a stage says <S>We fight back.<E> as lights flash. "
          "<AUDCAP>Shouted male voice, cheering crowd.<ENDAUDCAP>")


def flash_and_beep_clip(path: Path, audio_delay_frames: int) -> Path:
    """3 s at 25 fps: a white flash and a 1 kHz beep every 0.6 s, the beep `audio_delay_frames` late."""
    delay = audio_delay_frames / FPS
    subprocess.run([
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=black:s=64x64:r={FPS}:d=3,format=gray,geq=lum='if(lt(mod(T,0.6),0.08),235,16)'",
        "-f", "lavfi", "-i", f"aevalsrc='if(between(mod(t-{delay},0.6),0,0.08)*gte(t,{delay}),0.5*sin(2*PI*1000*t),0)':s=16000:d=3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def test_prompt_views_for_each_metric():
    assert visual_text(PROMPT) == "A man on a stage says as lights flash"
    assert audio_text(PROMPT) == "Shouted male voice, cheering crowd. Speech: We fight back."
    assert audio_text("Waves. Audio: surf and wind.") == "surf and wind."
    assert visual_text("no tags here") == audio_text("no tags here") == "no tags here"


def test_sync_scorer_specs_are_checked():
    with pytest.raises(ValueError, match="package.module:callable"):
        load_sync_scorer("ovi_pl.evaluation.sync")
    with pytest.raises(ValueError, match="cannot be imported"):
        load_sync_scorer("ovi_pl.evaluation.sync:NoSuchScorer")


@pytest.fixture
def stub_syncnet(monkeypatch):
    """The product loads IndexSyncNet(radius) where it loads SyncNet weights."""
    def use(radius: float) -> IndexSyncNet:
        net = IndexSyncNet(radius)
        monkeypatch.setattr("ovi_pl.sync.model.load_syncnet", lambda path, device="cpu": net)
        return net
    return use


# The SyncNet scorer on sync_stubs.IndexSyncNet: a 2 s, 25 fps clip whose left half shows index t at frame t
# and right half t + 2, with a lossless tone whose loudness says the time, `delay` frames late.
LEFT_FACE, RIGHT_FACE = Box(120, 60, 200, 140), Box(440, 60, 520, 140)


def index_av_clip(folder: Path, delay: int) -> Path:
    from ovi_pl.media.audio import save_flac

    tone = save_flac(folder / f"tone_{delay}.flac", index_tone(2.0, delay))
    return index_video(folder / f"index_{delay}.mp4", 2.0, right_lead=2, audio=tone)


@pytest.mark.parametrize("delay,boxes,best_lead", [(2, [LEFT_FACE], 0), (-2, [LEFT_FACE, RIGHT_FACE], 2)])
def test_syncnet_scorer_reports_the_known_curve(tmp_path, stub_syncnet, delay, boxes, best_lead):
    """Sync-C and Sync-D of the built-in scorer (faces, crops, the clip's own audio track, MFCC, SyncNet's rule)
    are the confidence and the minimum of the known distance curve of the most confident track; with two
    faces and the audio 2 frames early, that is the right face (lips 2 frames ahead, so in sync)."""
    from ovi_pl.evaluation.sync import SyncNetScorer

    stub_syncnet(3.0)
    scorer = SyncNetScorer(tmp_path / "syncnet_v2.model", min_track_frames=25, vshift=5)
    scorer.detector = StaticBoxes(boxes)
    score = scorer(index_av_clip(tmp_path, delay))
    n = windows(50, 50 * 640)
    offset, confidence, distance = expected_result(n, 5, best_lead + delay, radius=3.0)
    assert score.offset == offset == -(best_lead + delay)
    assert score.confidence == pytest.approx(confidence, abs=1e-5)
    assert score.distance == pytest.approx(distance, abs=1e-5)
    if len(boxes) == 2:  # the left face's track is the less confident one
        assert expected_result(n, 5, delay, radius=3.0)[1] < confidence


def test_syncnet_scorer_finds_real_faces_and_marks_faceless_clips(tmp_path, stub_syncnet):
    """The default Haar faces: 2 s of a real two-speaker clip get a score (the stand-in's numbers on real
    crops mean nothing), a clip without faces gets NaN and offset 0 instead of a made-up score."""
    from ovi_pl.evaluation.sync import SyncNetScorer

    stub_syncnet(3.0)
    faces = tmp_path / "faces.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE_MEDIA / "two_men_closeup_704x1280.mp4"),
                    "-t", "2", "-c:v", "libx264", "-c:a", "aac", str(faces)], check=True)
    scorer = SyncNetScorer(tmp_path / "syncnet_v2.model", min_track_frames=25, vshift=5)
    with_faces = scorer(faces)
    assert np.isfinite(with_faces.confidence) and np.isfinite(with_faces.distance)
    faceless = scorer(flash_and_beep_clip(tmp_path / "flash.mp4", 0))
    assert faceless.offset == 0 and np.isnan(faceless.confidence) and np.isnan(faceless.distance)


# ---------------------------------------------------------------------------- python -m ovi_pl evaluate: Sync-C/D


# 320x256 index clips at 25 fps (sync_stubs.index_video: frame t shows index t) with a white marker in the
# stride-32 cell (1, 1): the tiny YuNet finds a 64x64 face 4 cells right of and 2 below it on every frame,
# its crop clear of the marker. The same picture with the index tone `delay` frames late, in ALAC.
MARKER, FACE_CENTRE = (32, 32, 64, 64), (4.5, 2.5)
SHIFTED = {"000_in_sync.mp4": 0, "001_audio_3_late.mp4": 3, "002_audio_2_early.mp4": -2}
TONE_PROMPT = "A grey screen. Audio: a steady whistling tone."
NOISE_PROMPT = "A grey screen. Audio: a loud hissing noise."


def shifted_clip_folder(work: Path) -> Path:
    """The shifted copies, and a clip without the marker (no face), with a manifest as `generate` writes it,
    in work/clips. The last clip's prompt describes another sound than its tone."""
    from ovi_pl.media.audio import save_flac

    folder = work / "clips"
    folder.mkdir()
    clips = {**SHIFTED, "003_no_face.mp4": 0}
    for name, delay in clips.items():
        tone = save_flac(work / f"{name}.flac", index_tone(2.0, delay))
        index_video(folder / name, 2.0, size=(320, 256), marker=None if "no_face" in name else MARKER, audio=tone)
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "text_prompt"])
        writer.writeheader()
        for name in clips:
            writer.writerow({"file": name, "text_prompt": NOISE_PROMPT if "no_face" in name else TONE_PROMPT})
    return folder


def test_evaluate_command_reports_sync_of_shifted_copies(tmp_path, stub_syncnet, tiny_clap, capsys):
    """`python -m ovi_pl evaluate` with SyncNet weights and YuNet faces on the shifted copies: each clip's
    offset, Sync-C and Sync-D are those of the stand-in's known curve for its shift (offset -delay), the faceless
    clip scores NaN and is left out of the means, and the table and the means reach MLflow and evaluation.csv.
    The CLAP column from the fitted model scores the tone clips' matching description above the faceless
    clip's description of noise."""
    folder = shifted_clip_folder(tmp_path)
    onnx = yunet_onnx(tmp_path / "yunet.onnx", (320, 256), box_cells=(2.0, 2.0), centre=FACE_CENTRE)
    stub_syncnet(2.0)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ovi_pl_main(["evaluate", "--clips", str(folder), "--syncnet_weights", str(tmp_path / "syncnet_v2.model"),
                 "--face_detector", "yunet", "--face_detector_weights", str(onnx), "--clap_model", str(tiny_clap),
                 "--tracking_uri", tracking, "--run_name", "shifted"])
    assert "sync_c" in capsys.readouterr().out

    n = windows(50, 2 * 16000)
    expected = {name: expected_result(n, 15, delay, radius=2.0) for name, delay in SHIFTED.items()}
    assert [offset for offset, _, _ in expected.values()] == [0, -3, 2]
    with (folder / "evaluation.csv").open(newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    for name, (offset, confidence, distance) in expected.items():
        assert int(rows[name]["sync_offset"]) == offset
        assert float(rows[name]["sync_c"]) == pytest.approx(confidence, abs=1e-4)
        assert float(rows[name]["sync_d"]) == pytest.approx(distance, abs=1e-4)
    faceless = rows["003_no_face.mp4"]
    assert math.isnan(float(faceless["sync_c"])) and math.isnan(float(faceless["sync_d"]))

    client = MlflowClient(tracking_uri=tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-evaluation").experiment_id])
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))).read_text())
    logged = {row[table["columns"].index("file")]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert set(logged) == set(rows)
    assert logged["001_audio_3_late.mp4"]["sync_c"] == pytest.approx(expected["001_audio_3_late.mp4"][1], abs=1e-4)
    metrics = run.data.metrics
    assert metrics["eval/sync_abs_offset"] == pytest.approx(5 / 3)
    assert metrics["eval/sync_c"] == pytest.approx(np.mean([c for _, c, _ in expected.values()]), abs=1e-4)
    assert metrics["eval/sync_d"] == pytest.approx(np.mean([d for _, _, d in expected.values()]), abs=1e-4)
    clap = {name: float(row["clap_score"]) for name, row in rows.items()}
    assert metrics["eval/clap_score"] == pytest.approx(np.mean(list(clap.values())), abs=1e-4)
    assert min(clap[name] for name in SHIFTED) > clap["003_no_face.mp4"]


def test_evaluate_needs_something_to_score(tmp_path):
    from ovi_pl.evaluation.cli import parse_config, run_evaluate

    with pytest.raises(ValueError, match="nothing to score"):
        run_evaluate(parse_config(["--clips", str(tmp_path)]))
    with pytest.raises(ValueError, match="face detector yunet needs its weights"):
        run_evaluate(parse_config(["--clips", str(tmp_path), "--syncnet_weights", str(tmp_path / "s.model"),
                                   "--face_detector", "yunet"]))


# ---------------------------------------------------------------------------- CLIP and CLAP rank captions

COLOURS = {"a red picture": (255, 0, 0), "a green picture": (0, 255, 0), "a blue picture": (0, 0, 255)}
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def ranks_each_match_first(scores: np.ndarray) -> bool:
    """scores[clip, caption] with clip i made for caption i: each clip's own caption scores highest."""
    return bool(np.all(scores.argmax(axis=1) == np.arange(len(scores))))


@pytest.fixture(scope="module")
def ray_cluster():
    """Joins or starts the in-process Ray cluster (ovi_pl.ray_cluster, as the CLIP scorer and curation's pipeline
    do) when called; one for the module, shut down after it."""
    import ray

    from ovi_pl.ray_cluster import join_or_start_ray

    yield lambda: join_or_start_ray(num_cpus=1)  # the one CLIP actor
    ray.shutdown()


def test_clip_score_ranks_the_matching_colour_first(tmp_path, ray_cluster):
    """A tiny open_clip model fitted (tests/fit_tiny_clip.py, in the models environment) on jittered solid
    colours and their names, saved as safetensors; the scorer, on mp4s of those colours encoded by ffmpeg
    (yuv420p, so not the training pixels), scores each clip's own colour above the other two in a Ray actor
    on the default models environment (.venv-models, ovi_pl.envs). A swapped channel order on the way from the
    decoder to the actor would rank red and blue wrongly."""
    from ovi_pl.evaluation.clip_score import ClipScorer

    python = models_python()
    if python is None:
        pytest.skip("no models-environment python with open_clip (.venv-models); run `make models-env`")
    config = tmp_path / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    weights = tmp_path / "tiny-clip.safetensors"
    pairs = json.dumps([[rgb, caption] for caption, rgb in COLOURS.items()])
    fit = subprocess.Popen([str(python), "-I", str(Path(__file__).with_name("fit_tiny_clip.py")), str(config),
                            str(weights), pairs])
    ray_cluster()  # while the model fits
    clips = []
    for caption, (r, g, b) in COLOURS.items():
        clip = tmp_path / f"{caption.split()[1]}.mp4"
        colour = f"color=c=0x{r:02x}{g:02x}{b:02x}:s=64x64:r=25:d=1"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", colour, "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", str(clip)], check=True)
        clips.append(clip)
    assert fit.wait(timeout=600) == 0
    scorer = ClipScorer("tiny-clip", weights, config, num_frames=2)
    scores = np.array(scorer([(clip, caption) for clip in clips for caption in COLOURS])).reshape(3, 3)
    assert ranks_each_match_first(scores), scores


def test_clip_environment_is_checked_before_any_work(tmp_path):
    """`evaluate --clip.*` checks the environment open-clip runs in as a curation config's `envs` are checked,
    before the clip folder is read (it is empty here): an unknown name, an interpreter that is not there, pinned
    requirements whose numpy is not the driver's."""
    from ovi_pl.evaluation.cli import parse_config, run_evaluate

    weights = tmp_path / "clip.safetensors"
    weights.write_bytes(b"")
    args = ["--clips", str(tmp_path), "--clip.model", "ViT-L-14", "--clip.weights", str(weights)]
    with pytest.raises(ValueError, match=r"clip.environment: 'gpu' is not in envs \(has \['models'\]\)"):
        run_evaluate(parse_config([*args, "--clip.environment", "gpu"]))
    missing = tmp_path / "no-venv/bin/python"
    with pytest.raises(ValueError, match=rf"envs.models.python: {missing} does not exist; .*make models-env"):
        run_evaluate(parse_config([*args, "--envs", json.dumps({"models": {"python": str(missing)}})]))
    with pytest.raises(ValueError, match=r"envs.pinned.pip: 'numpy==1.0' must pin numpy==\S+, the driver's version"):
        run_evaluate(parse_config([*args, "--envs", json.dumps({"pinned": {"pip": ["numpy==1.0"]}}),
                                   "--clip.environment", "pinned"]))


def test_clap_score_ranks_the_matching_sound_first(tiny_clap, tmp_path):
    """The tiny CLAP (tests/fit_tiny_clap.py, fitted on tones and noise drawn in numpy) scores mp4s whose
    sound ffmpeg made (a 700 Hz sine, white noise; AAC at 44.1 kHz, resampled to CLAP's 48 kHz by the scorer)
    higher against their own description than against the other's."""
    from ovi_pl.evaluation.clap_score import ClapScorer

    sources = {"a steady whistling tone": "sine=frequency=700:sample_rate=44100:duration=1",
               "a loud hissing noise": "anoisesrc=color=white:amplitude=0.3:sample_rate=44100:duration=1:seed=7"}
    clips = []
    for i, source in enumerate(sources.values()):
        clip = tmp_path / f"sound_{i}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=1",
                        "-f", "lavfi", "-i", source, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        "-shortest", str(clip)], check=True)
        clips.append(clip)
    scores = np.array(ClapScorer(tiny_clap)([(clip, text) for clip in clips for text in sources])).reshape(2, 2)
    assert ranks_each_match_first(scores), scores
