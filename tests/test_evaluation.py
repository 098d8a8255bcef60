"""Evaluation of generated clips: the sync-scorer interface, the SyncNet scorer on a stand-in network with
a known distance curve, CLIP (models environment) and CLAP against scores computed here from known
frames and samples, and `python -m ovi_pl evaluate` logging a table to MLflow."""

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

from conftest import SAMPLE_MEDIA, models_python
from ovi_pl.evaluation import SyncScore, audio_text, evaluate_clips, read_clip_folder, visual_text
from ovi_pl.evaluation.evaluate import summarize
from ovi_pl.evaluation.sync import load_sync_scorer
from ovi_pl.sync.faces import Box, StaticBoxes

sys.path.insert(0, str(Path(__file__).parent))
from sync_stubs import IndexSyncNet, expected_result, index_tone, index_video, windows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
PROMPT = ("A man on a stage says <S>We fight back.<E> as lights flash. "
          "<AUDCAP>Shouted male voice, cheering crowd.<ENDAUDCAP>")


class KnownSyncScorer:
    """A user-supplied scorer for the `--sync_scorer module:callable` interface (a class made with no
    arguments): fixed scores by file name, so the table and the logged means are known."""

    SCORES = {"000_in_sync.mp4": SyncScore(offset=0, confidence=7.5, distance=2.25),
              "001_late_audio.mp4": SyncScore(offset=-3, confidence=1.25, distance=9.0)}

    def __call__(self, path: Path) -> SyncScore:
        return self.SCORES[Path(path).name]


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
    scorer = load_sync_scorer("test_evaluation:KnownSyncScorer")
    rows = evaluate_clips(read_clip_folder(clip_folder), sync=scorer)
    assert [(r["file"], r["sync_offset"], r["sync_c"], r["sync_d"]) for r in rows] == [
        ("000_in_sync.mp4", 0, 7.5, 2.25), ("001_late_audio.mp4", -3, 1.25, 9.0)]
    assert summarize(rows) == {"sync_abs_offset": 1.5, "sync_c": 4.375, "sync_d": 5.625}


# The SyncNet scorer on sync_stubs.IndexSyncNet: a 2 s, 25 fps clip whose left half shows index t at frame t
# and right half t + 2, with a lossless tone whose loudness says the time, `delay` frames late.
LEFT_FACE, RIGHT_FACE = Box(120, 60, 200, 140), Box(440, 60, 520, 140)


@pytest.fixture
def stub_syncnet(monkeypatch):
    """The product loads IndexSyncNet(radius) where it loads SyncNet weights."""
    def use(radius: float) -> IndexSyncNet:
        net = IndexSyncNet(radius)
        monkeypatch.setattr("ovi_pl.sync.model.load_syncnet", lambda path, device="cpu": net)
        return net
    return use


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


def known_frame_clip(path: Path) -> Path:
    """2 s at 25 fps of one 64x64 frame, left half pure red and right half pure blue, stored as lossless RGB
    (libx264rgb), so every decoded frame is exactly that image (a swapped channel order would not be); with
    a silent audio track."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=32x64:r=25:d=2,format=rgb24[a];color=c=blue:s=32x64:r=25:d=2,format=rgb24[b];"
                    "[a][b]hstack", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2",
                    "-c:v", "libx264rgb", "-qp", "0", "-pix_fmt", "rgb24", "-c:a", "aac", str(path)], check=True)
    return path


# The CLIP score of that image, computed here: 100 x cosine of the normalised image and text embeddings.
CLIP_OF_KNOWN_FRAME = """
import json, sys
import numpy as np, open_clip, torch
from PIL import Image
open_clip.add_model_config(sys.argv[1])
model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=None)
model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
model.eval()
image = np.zeros((64, 64, 3), np.uint8)
image[:, :32, 0] = 255
image[:, 32:, 2] = 255
with torch.no_grad():
    img = torch.nn.functional.normalize(model.encode_image(preprocess(Image.fromarray(image))[None]).float(), dim=-1)
    txt = torch.nn.functional.normalize(model.encode_text(open_clip.get_tokenizer("tiny-clip")(json.loads(sys.argv[3])))
                                        .float(), dim=-1)
print(json.dumps((100.0 * img @ txt.T)[0].tolist()))
"""


def test_clip_score_runs_in_the_models_environment(tiny_clip, tmp_path):
    from ovi_pl.evaluation.clip_score import ClipScorer

    scorer = ClipScorer("tiny-clip", tiny_clip["weights"], tiny_clip["config"], num_frames=4, python=tiny_clip["python"])
    clip = known_frame_clip(tmp_path / "red_blue.mp4")
    texts = ["white flashes", "a concert stage"]
    scores = scorer([(clip, text) for text in texts])
    result = subprocess.run([str(tiny_clip["python"]), "-I", "-c", CLIP_OF_KNOWN_FRAME, str(tiny_clip["config"]),
                             str(tiny_clip["weights"]), json.dumps(texts)],
                            capture_output=True, text=True, timeout=300, check=True)
    expected = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores == pytest.approx(expected, abs=1e-3)
    assert abs(expected[0] - expected[1]) > 0.01  # the two texts are told apart, so the match above means something


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


def test_clap_score_from_a_local_model(tiny_clap, tmp_path):
    """The scorer's value for a clip whose audio is known sample for sample (ALAC, at the model's 48 kHz):
    100 x cosine of CLAP's normalised embeddings of those samples and of the text, computed here."""
    import soundfile
    from transformers import ClapModel, ClapProcessor

    from ovi_pl.evaluation.clap_score import ClapScorer

    rate = 48000
    t = np.arange(2 * rate) / rate
    samples = np.round(0.3 * (1 + t) * np.sin(2 * np.pi * (440 + 200 * t) * t) * 32767).astype(np.int16)
    soundfile.write(str(tmp_path / "chirp.wav"), samples, rate, subtype="PCM_16")
    clip = tmp_path / "chirp.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=2",
                    "-i", str(tmp_path / "chirp.wav"), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "alac",
                    str(clip)], check=True)
    scorer = ClapScorer(tiny_clap)
    assert len(scorer.processor.tokenizer("cheering crowd").input_ids) > 2  # real tokens, not just <s></s>
    texts = ["beeping", "cheering crowd"]
    scores = scorer([(clip, text) for text in texts])

    model = ClapModel.from_pretrained(tiny_clap, local_files_only=True).eval()
    processor = ClapProcessor.from_pretrained(tiny_clap, local_files_only=True)

    def unit(output) -> torch.Tensor:
        emb = output if isinstance(output, torch.Tensor) else output.pooler_output
        return torch.nn.functional.normalize(emb, dim=-1)

    with torch.no_grad():
        features = processor.feature_extractor([samples / 32768.0], sampling_rate=rate, return_tensors="pt")
        audio = unit(model.get_audio_features(input_features=features["input_features"],
                                              is_longer=features.get("is_longer")))
        expected = []
        for text in texts:
            tokens = processor.tokenizer([text], return_tensors="pt")
            expected.append(float(100 * (audio * unit(model.get_text_features(**tokens))).sum()))
    assert scores == pytest.approx(expected, abs=1e-3)
    assert abs(expected[0] - expected[1]) > 0.01


# ---------------------------------------------------------------------------- command


def test_evaluate_command_logs_a_table_to_mlflow(clip_folder, tiny_clap, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    result = subprocess.run(
        [sys.executable, "-m", "ovi_pl", "evaluate", "--clips", str(clip_folder),
         "--sync_scorer", "test_evaluation:KnownSyncScorer", "--clap_model", str(tiny_clap),
         "--tracking_uri", tracking, "--run_name", "tiny-eval"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(tracking_uri=tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-evaluation").experiment_id])
    assert {"evaluation.json", "evaluation.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))).read_text())
    assert {"file", "sync_c", "sync_d", "sync_offset", "clap_score"} <= set(table["columns"])
    metrics = run.data.metrics
    assert (metrics["eval/sync_abs_offset"], metrics["eval/sync_c"], metrics["eval/sync_d"]) == (1.5, 4.375, 5.625)
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["file"], r["sync_offset"], r["sync_c"], r["sync_d"]) for r in rows] == [
        ("000_in_sync.mp4", 0, 7.5, 2.25), ("001_late_audio.mp4", -3, 1.25, 9.0)]
    assert metrics["eval/clap_score"] == pytest.approx(sum(r["clap_score"] for r in rows) / 2)


def test_evaluate_needs_something_to_score(clip_folder, tmp_path):
    from ovi_pl.evaluation.cli import parse_config, run_evaluate

    with pytest.raises(ValueError, match="nothing to score"):
        run_evaluate(parse_config(["--clips", str(clip_folder)]))
