"""Evaluation of generated clips: the sync-scorer interface, CLIP (models environment), CLAP, and
`python -m ovi_pl evaluate` logging a table to MLflow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import SHARED_MEDIA, models_python
from ovi_pl.encoders import read_av_clip
from ovi_pl.evaluation import SyncScore, audio_text, evaluate_clips, read_clip_folder, visual_text

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
PROMPT = ("A man on a stage says <S>We fight back.<E> as lights flash. "
          "<AUDCAP>Shouted male voice, cheering crowd.<ENDAUDCAP>")


class EnvelopeSyncScorer:
    """A user-supplied scorer, to test the `--sync_scorer module:callable` interface on clips whose
    true offset is known (SyncNet with random weights finds none). It does measure sync: the
    normalised cross-correlation of per-frame brightness change and audio loudness at lags of
    -vshift..vshift frames, in SyncNet's terms (distance = 1 - correlation; offset in frames,
    negative when the audio is late)."""

    vshift = 6

    def __call__(self, path: Path) -> SyncScore:
        clip = read_av_clip(path, num_frames=3 * FPS - 1, fps=FPS)
        light = clip.video.float().mean(dim=(0, 2, 3))
        motion = (light[1:] - light[:-1]).abs()
        loud = clip.audio[: len(light) * 640].view(len(light), 640).square().mean(1).sqrt()
        loud = (loud[1:] - loud[:-1]).abs()
        dists = []
        for lag in range(-self.vshift, self.vshift + 1):
            a, v = (loud[lag:], motion[: len(motion) - lag]) if lag >= 0 else (loud[:lag], motion[-lag:])
            a, v = (a - a.mean()) / (a.std() + 1e-8), (v - v.mean()) / (v.std() + 1e-8)
            dists.append(1.0 - float((a * v).mean()))
        dists_t = torch.tensor(dists)
        best = int(dists_t.argmin())
        return SyncScore(offset=self.vshift - best, confidence=float(dists_t.median() - dists_t.min()),
                         distance=float(dists_t.min()))


def flash_and_beep_clip(path: Path, audio_delay_frames: int) -> Path:
    """3 s at 25 fps: a white flash and a 1 kHz beep every 0.6 s, the beep `audio_delay_frames` late."""
    delay = audio_delay_frames / FPS
    subprocess.run([
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=black:s=64x64:r={FPS}:d=3,format=gray,geq=lum='if(lt(mod(T,0.6),0.08),235,16)'",
        "-f", "lavfi", "-i", f"aevalsrc='if(between(mod(t-{delay},0.6),0,0.08)*gte(t,{delay}),0.5*sin(2*PI*1000*t),0)':s=16000:d=3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    flash_and_beep_clip(folder / "000_in_sync.mp4", 0)
    flash_and_beep_clip(folder / "001_late_audio.mp4", 3)
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "text_prompt"])
        writer.writeheader()
        writer.writerow({"file": "000_in_sync.mp4", "text_prompt": PROMPT})
        writer.writerow({"file": "001_late_audio.mp4", "text_prompt": "Flashes of light. Audio: beeping."})
    return folder


def test_prompt_views_for_each_metric():
    assert visual_text(PROMPT) == "A man on a stage says as lights flash"
    assert audio_text(PROMPT) == "Shouted male voice, cheering crowd. Speech: We fight back."
    assert audio_text("Waves. Audio: surf and wind.") == "surf and wind."
    assert visual_text("no tags here") == audio_text("no tags here") == "no tags here"


def test_sync_scores_through_the_scorer_interface(clip_folder):
    records = read_clip_folder(clip_folder)
    rows = evaluate_clips(records, sync=EnvelopeSyncScorer())
    assert [r["sync_offset"] for r in rows] == [0, -3]
    assert all(r["sync_c"] > 0.5 and r["sync_d"] < 0.5 for r in rows)


def test_syncnet_scorer_scores_face_tracks_and_marks_faceless_clips(tmp_path):
    """The built-in scorer end to end (Haar faces, 224x224 crops, MFCC, SyncNet) on 2 s of a real
    two-speaker clip. Random SyncNet weights (the released file cannot be downloaded here) make the
    values meaningless; what is tested is that a face clip gets finite Sync-C/D within the search
    range and a clip without faces gets NaN instead of a made-up score."""
    from ovi_pl.sync.model import SyncNet
    from ovi_pl.evaluation.sync import SyncNetScorer

    torch.manual_seed(0)
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), weights)
    faces = tmp_path / "faces.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SHARED_MEDIA / "two_men_closeup_704x1280.mp4"),
                    "-t", "2", "-c:v", "libx264", "-c:a", "aac", str(faces)], check=True)
    scorer = SyncNetScorer(weights, min_track_frames=25, vshift=5)
    with_faces = scorer(faces)
    assert -5 <= with_faces.offset <= 5
    assert np.isfinite(with_faces.confidence) and with_faces.confidence >= 0 and np.isfinite(with_faces.distance)
    faceless = scorer(flash_and_beep_clip(tmp_path / "flash.mp4", 0))
    assert np.isnan(faceless.confidence) and np.isnan(faceless.distance)


# ---------------------------------------------------------------------------- CLIP


TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> dict:
    python = models_python()
    if python is None:
        pytest.skip("no models-environment python with open_clip (.venv-models); run `make models-env`")
    root = tmp_path_factory.mktemp("clip")
    (root / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    script = ("import open_clip, torch, sys; open_clip.add_model_config(sys.argv[1]); torch.manual_seed(0); "
              "torch.save(open_clip.create_model('tiny-clip', pretrained=None).state_dict(), sys.argv[2])")
    subprocess.run([str(python), "-I", "-c", script, str(root / "tiny-clip.json"), str(root / "tiny.pt")],
                   check=True, timeout=300)
    return {"python": python, "config": root / "tiny-clip.json", "weights": root / "tiny.pt"}


def test_clip_score_runs_in_the_models_environment(clip_folder, tiny_clip):
    from ovi_pl.evaluation.clip_score import ClipScorer

    scorer = ClipScorer("tiny-clip", tiny_clip["weights"], tiny_clip["config"], num_frames=4, python=tiny_clip["python"])
    clip = clip_folder / "000_in_sync.mp4"
    scores = scorer([(clip, "white flashes"), (clip, "a concert stage"), (clip, "white flashes")])
    assert all(-100 <= s <= 100 for s in scores)
    assert scores[0] == pytest.approx(scores[2]) and scores[0] != pytest.approx(scores[1])


# ---------------------------------------------------------------------------- CLAP


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory) -> Path:
    """A random tiny ClapModel with a byte-level BPE tokenizer, saved like a released checkpoint."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    path = tmp_path_factory.mktemp("clap")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["shouted male voice cheering crowd beeping speech surf wind"] * 5, vocab_size=400,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer).save_pretrained(path)
    config = ClapConfig(
        text_config=dict(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80, projection_dim=16),
        audio_config=dict(hidden_size=64, patch_embeds_hidden_size=8, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1], projection_dim=16, window_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    ClapModel(config).save_pretrained(path)
    return path


def test_clap_score_from_a_local_model(clip_folder, tiny_clap):
    from ovi_pl.evaluation.clap_score import ClapScorer

    scorer = ClapScorer(tiny_clap)
    clip = clip_folder / "000_in_sync.mp4"
    assert len(scorer.processor.tokenizer("cheering crowd").input_ids) > 2  # real tokens, not just <s></s>
    scores = scorer([(clip, "beeping"), (clip, "cheering crowd")])
    assert all(-100 <= s <= 100 for s in scores) and scores[0] != pytest.approx(scores[1])


# ---------------------------------------------------------------------------- command


def test_evaluate_command_logs_a_table_to_mlflow(clip_folder, tiny_clap, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    result = subprocess.run(
        [sys.executable, "-m", "ovi_pl", "evaluate", "--clips", str(clip_folder),
         "--sync_scorer", "test_evaluation:EnvelopeSyncScorer", "--clap_model", str(tiny_clap),
         "--tracking_uri", tracking, "--run_name", "tiny-eval"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(tracking_uri=tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-evaluation").experiment_id])
    assert {"evaluation.json", "evaluation.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))).read_text())
    assert {"file", "sync_c", "sync_d", "sync_offset", "clap_score"} <= set(table["columns"])
    assert run.data.metrics["eval/sync_abs_offset"] == pytest.approx(1.5)
    assert "eval/clap_score" in run.data.metrics and "eval/sync_c" in run.data.metrics


def test_evaluate_needs_something_to_score(clip_folder, tmp_path):
    from ovi_pl.evaluation.cli import parse_config, run_evaluate

    with pytest.raises(ValueError, match="nothing to score"):
        run_evaluate(parse_config(["--clips", str(clip_folder)]))
