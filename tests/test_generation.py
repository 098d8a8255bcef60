"""Sampling, the generate command and the training-time sample callback, with tiny models on CPU."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from curation.config import OnsetJudge
from ovi_pl.encoders import LogMelSpectrogram, MelConfig
from ovi_pl.evaluation import audio_text
from ovi_pl.evaluation.clap_score import ClapScorer
from ovi_pl.encoders.tiny import (
    TINY_AUDIO_YAML,
    write_tiny_audio_checkpoints,
    write_tiny_text_encoder,
    write_tiny_video_vae,
)
from ovi_pl.generation import (
    ClipGeometry,
    Conditioning,
    FlowSolver,
    SamplerConfig,
    guided_velocity,
    initial_noise,
    sample,
)
from ovi_pl.generation.cli import caption_style, parse_config, run_generate
from ovi_pl.generation.prompts import PromptSpec, prompt_texts
from ovi_pl.generation.media_io import probe_av
from ovi_pl.models.ovi import OviFusionModel, get_model_config, save_ovi_checkpoint
from ovi_pl.training.sample_callback import SampleVideoCallback
from ovi_pl.training.sample_sync import SYNC_METHODS

from conftest import ROOT, SAMPLE_PROMPTS_CSV, randomize_, run_ovi_pl, tiny_inputs
from speech_media import make_flash_clip

PROMPTS_CSV = SAMPLE_PROMPTS_CSV


def tiny_conditioning(seed: int = 0) -> Conditioning:
    x = tiny_inputs(batch=1, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    return Conditioning(x["video_context"], x["audio_context"],
                        torch.randn(1, 10, 32, generator=gen), torch.randn(1, 10, 32, generator=gen))


# ---------------------------------------------------------------------------- solvers


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_one_step_is_the_closed_form_flow_step(tiny_model, solver):
    """One step from the top level s0 to 0 is x0_hat = x - s0 * v(x, t0), for plain and guided velocities
    (s0 = 1, t0 = 1000 for Euler; s0 = 0.9998, t0 = 999 for the reference's UniPC)."""
    cond = tiny_conditioning()
    video, audio = initial_noise(1, (48, 3, 4, 6), (13, 20), seed=3, device="cpu")
    schedule = FlowSolver(solver, steps=1, shift=5.0)
    t, s0 = schedule.model_times, schedule.levels[0]

    plain = SamplerConfig(solver=solver, steps=1, video_guidance=1.0, audio_guidance=1.0)
    v, a = tiny_model(video, audio, t, cond.video, cond.audio)
    out_v, out_a = sample(tiny_model, video, audio, cond, plain)
    torch.testing.assert_close(out_v, video - s0 * v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_a, audio - s0 * a, atol=1e-5, rtol=1e-5)

    guided = SamplerConfig(solver=solver, steps=1, video_guidance=4.0, audio_guidance=3.0, skip_layer=1)
    v_neg, a_neg = tiny_model(video, audio, t, cond.video_negative, cond.audio_negative, skip_block=1)
    out_v, out_a = sample(tiny_model, video, audio, cond, guided, num_layers=2)
    torch.testing.assert_close(out_v, video - s0 * (v_neg + 4.0 * (v - v_neg)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_a, audio - s0 * (a_neg + 3.0 * (a - a_neg)), atol=1e-5, rtol=1e-5)


class GaussianFlow(nn.Module):
    """The exact velocity E[eps - x0 | x_s] for x0 ~ N(mu, c^2) per element. Its flow carries noise
    z at s = 1 to mu + c z at s = 0, so every solver has a known target to approach."""

    def __init__(self, mu: float, c: float) -> None:
        super().__init__()
        self.mu, self.c = mu, c
        self.first_frame_clean: list[bool] = []

    def velocity(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        s = s.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        var = (1 - s) ** 2 * self.c**2 + s**2
        centred = x - (1 - s) * self.mu
        return s / var * centred - (self.mu + (1 - s) * self.c**2 / var * centred)

    def forward(self, video, audio, t, video_context, audio_context, first_frame_clean=False, skip_block=None):
        self.first_frame_clean.append(first_frame_clean)
        s = t / 1000.0
        return self.velocity(video, s), self.velocity(audio, s)


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_more_steps_get_closer_to_the_exact_flow_target(solver):
    model = GaussianFlow(mu=1.5, c=0.3)
    video, audio = initial_noise(1, (48, 3, 4, 6), (13, 20), seed=0, device="cpu")
    cond = tiny_conditioning()
    errors = []
    for steps in (2, 4, 8, 16, 32):
        cfg = SamplerConfig(solver=solver, steps=steps, video_guidance=1.0, audio_guidance=1.0)
        out_v, out_a = sample(model, video, audio, cond, cfg)
        errors.append(max((out_v - (1.5 + 0.3 * video)).abs().max(), (out_a - (1.5 + 0.3 * audio)).abs().max()).item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # Shift 5 (the default) leaves a long last step (s = 0.14 -> 0 at 32 steps), where this flow
    # bends most, so both converge slowly here; the comparison below uses an unshifted grid.
    assert errors[-1] < errors[0] / 4, errors


def test_unipc_beats_euler_at_equal_steps_on_an_unshifted_grid():
    model = GaussianFlow(mu=1.5, c=0.3)
    video, audio = initial_noise(1, (48, 3, 4, 6), (13, 20), seed=0, device="cpu")
    errs = {}
    for solver in ("euler", "unipc"):
        out_v, _ = sample(model, video, audio, tiny_conditioning(),
                          SamplerConfig(solver=solver, steps=16, shift=1.0, video_guidance=1.0, audio_guidance=1.0))
        errs[solver] = (out_v - (1.5 + 0.3 * video)).abs().max().item()
    assert errs["unipc"] < errs["euler"] / 10, errs  # measured: 5e-4 vs 0.14


def test_image_to_video_keeps_the_first_latent_frame():
    model = GaussianFlow(mu=1.5, c=0.3)
    video, audio = initial_noise(1, (48, 3, 4, 6), (13, 20), seed=0, device="cpu")
    first = torch.full((1, 48, 1, 4, 6), -2.0)
    seen = []
    out_v, _ = sample(model, video, audio, tiny_conditioning(), SamplerConfig(steps=3, video_guidance=2.0, skip_layer=None),
                      first_frame=first, on_step=lambda i, v, a: seen.append(v[:, :, :1].clone()))
    assert torch.equal(out_v[:, :, :1], first)
    assert model.first_frame_clean and all(model.first_frame_clean)
    assert all(torch.equal(frame, first) for frame in seen)
    assert not torch.equal(out_v[:, :, 1:], video[:, :, 1:])  # the other frames were sampled
    with pytest.raises(ValueError, match="first_frame"):
        sample(model, video, audio, tiny_conditioning(), SamplerConfig(steps=1), first_frame=first[:, :, :, :2])


def test_skip_layer_outside_the_model_fails_naming_the_option(tiny_model):
    video, audio = initial_noise(1, (48, 3, 4, 6), (13, 20), seed=0, device="cpu")
    with pytest.raises(ValueError, match="skip_layer=11"):
        sample(tiny_model, video, audio, tiny_conditioning(), SamplerConfig(steps=1), num_layers=2)


def test_geometry_follows_the_training_clips():
    released = ClipGeometry()
    assert released.video_latent_shape == (48, 31, 44, 80) and released.audio_latents == 157
    # What the audio VAE makes of the clip's audio span, so sampled and training latents agree.
    # (DESIGN.md quotes 314 for Ovi's 10 s model; our encoder gives 313 for 241 frames / 10.04 s.)
    for frames in (9, 121, 241):
        samples = round(frames / 24, 2) * 16_000
        assert ClipGeometry(num_frames=frames).audio_latents == LogMelSpectrogram(MelConfig()).num_frames(round(samples)) // 2
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ClipGeometry(num_frames=120)


def test_released_geometry_checks_name_the_key_and_fix():
    model = get_model_config("ovi-11b-960x960-10s")
    with pytest.raises(ValueError, match="geometry.num_frames: 241"):
        ClipGeometry(height=960, width=960, num_frames=121).for_model(model)
    # Ovi 1.0's default 704x1280 is 10 % off 720x720: the reference rescales to 544x960.
    with pytest.raises(ValueError, match="geometry.height: 544, geometry.width: 960"):
        ClipGeometry(height=704, width=1280).for_model(get_model_config("ovi-11b-720x720-5s"))
    with pytest.raises(ValueError, match="multiples of 32"):
        ClipGeometry(height=720, width=720).for_model(get_model_config("ovi-11b"))
    wide = ClipGeometry(height=704, width=1280, num_frames=241).for_model(model)
    assert wide.audio_latents == 314 and ClipGeometry(num_frames=241).audio_latents == 313


def test_prompts_take_the_checkpoints_caption_style():
    audcap = "A man says <S>Audio: check.<E> and waves. <AUDCAP>Male voice, echo.<ENDAUDCAP>"
    prefix = "A man says <S>Audio: check.<E> and waves. Audio: Male voice, echo."
    specs = [PromptSpec(audcap), PromptSpec(prefix), PromptSpec("No audio description.")]
    assert prompt_texts(specs, "audio_prefix") == [prefix, prefix, "No audio description."]
    assert prompt_texts(specs, "audcap") == [audcap, audcap, "No audio description."]
    assert prompt_texts(specs, None) == [audcap, prefix, "No audio description."]
    assert caption_style("model", get_model_config("ovi-11b-960x960-5s")) == "audio_prefix"
    assert caption_style("model", get_model_config("ovi-11b-720x720-5s")) == "audcap"
    assert caption_style("model", get_model_config("ovi-tiny")) is None


# ---------------------------------------------------------------------------- generate command


@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen_assets")
    torch.manual_seed(0)
    model = randomize_(OviFusionModel(get_model_config("ovi-tiny")), seed=5)
    with torch.no_grad():
        for tower in (model.video, model.audio):
            tower.head.proj.weight.mul_(0.1)
    audio_vae, vocoder = write_tiny_audio_checkpoints(root / "mmaudio")
    Image.new("RGB", (80, 50), (200, 40, 40)).save(root / "first.png")
    return {
        "checkpoint": save_ovi_checkpoint(model, root / "ovi-tiny.safetensors"),
        "video_vae": write_tiny_video_vae(root / "wan_vae"),
        "audio_vae": audio_vae,
        "vocoder": vocoder,
        "text_encoder": write_tiny_text_encoder(root / "umt5", d_model=32, num_layers=2),
        "image": root / "first.png",
    }


def generate_config(assets: dict[str, Path], prompts: Path, out: Path, **extra) -> dict:
    audio_cfg = yaml.safe_load(TINY_AUDIO_YAML)
    return {
        "checkpoint": str(assets["checkpoint"]), "model_config": "ovi-tiny", "prompts": str(prompts),
        "output_dir": str(out),
        "geometry": {"height": 32, "width": 64, "num_frames": 9, "fps": 24.0},
        "sampler": {"solver": "unipc", "steps": 3, "skip_layer": 1},
        "encoders": {"video_vae": str(assets["video_vae"]), "audio_vae": str(assets["audio_vae"]),
                     "vocoder": str(assets["vocoder"]), "text_encoder": str(assets["text_encoder"]),
                     "audio_vae_config": audio_cfg},
        **extra,
    }


def test_generate_writes_playable_mp4s_of_the_requested_length(tmp_path, tiny_assets):
    """Text-to-AV from the example prompt csv, plus an image-to-AV row; decoded with PyAV and ffprobe."""
    first_prompt = next(csv.DictReader(PROMPTS_CSV.open()))["text_prompt"]
    prompts = tmp_path / "prompts.csv"
    with prompts.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text_prompt", "image_path"])
        writer.writeheader()
        writer.writerow({"text_prompt": first_prompt, "image_path": ""})
        writer.writerow({"text_prompt": "A woman says <S>hello<E>.", "image_path": str(tiny_assets["image"])})
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump(generate_config(tiny_assets, prompts, tmp_path / "out")))
    result = run_ovi_pl(tmp_path, "generate", "--config", str(config))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    clips = sorted((tmp_path / "out").glob("*.mp4"))
    assert [c.name[:4] for c in clips] == ["000_", "001_"]
    for clip in clips:
        frames, video_seconds, audio_seconds = probe_av(clip)
        assert frames == 9 and video_seconds == pytest.approx(9 / 24)
        # 0.38 s of audio -> 11 latents of 512 samples: within one latent of the video's span.
        assert audio_seconds == pytest.approx(11 * 512 / 16000, abs=1e-3)
        assert abs(audio_seconds - video_seconds) < 1 / 31.25
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
                                "-of", "csv=p=0", str(clip)], capture_output=True, text=True, check=True)
        assert sorted(probe.stdout.split()) == ["aac,audio", "h264,video"]
    manifest = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert manifest[0]["text_prompt"] == first_prompt and manifest[1]["image_path"].endswith("first.png")


def test_generate_rejects_unknown_keys_and_missing_encoders(tmp_path, tiny_assets):
    with pytest.raises(SystemExit):
        parse_config(["--checkpoint", "x", "--prompts", "y", "--sampler.stepz", "3"])
    config = generate_config(tiny_assets, PROMPTS_CSV, tmp_path / "out")
    config["encoders"].pop("video_vae")
    path = tmp_path / "generate.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_ovi_pl(tmp_path, "generate", "--config", str(path))
    assert result.returncode != 0 and "encoders for video are not set" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.mp4"))


def test_shipped_generate_config_parses():
    cfg = parse_config(["--config", str(ROOT / "configs/generate/ovi_11b.yaml")])
    assert cfg.sampler == SamplerConfig(seed=100)  # the paper's sampler is the default
    assert cfg.geometry.audio_latents == 157


# ---------------------------------------------------------------------------- sample callback


def test_sample_callback_logs_mp4s_to_the_mlflow_run(tmp_path, tiny_clap):
    """A 2-rank FSDP2 run of the tiny config, its sample callback given the tiny CLAP: every rank samples,
    rank 0 logs the clips and their scores."""
    config = yaml.safe_load((ROOT / "configs/tiny_fusion.yaml").read_text())
    (callback,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith(".SampleVideoCallback")]
    callback["init_args"]["clap_model"] = str(tiny_clap)
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = run_ovi_pl(tmp_path, "fit", "--config", "fit.yaml", "--trainer.devices=2",
                        "--trainer.max_steps=3", "--data.num_samples=4")
    assert result.returncode == 0, result.stderr[-6000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs/tiny_fusion/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ovi-tiny-fusion").experiment_id])
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "previews/step_0000003")]
    assert [Path(p).name[:4] for p in logged] == ["000_", "001_"] and all(p.endswith(".mp4") for p in logged)
    local = client.download_artifacts(run.info.run_id, logged[0], str(tmp_path / "download"))
    frames, _, audio_seconds = probe_av(local)
    assert frames == 9 and audio_seconds > 0
    assert "previews/seconds" in run.data.metrics and "samples/seconds" not in run.data.metrics
    # The sync judges scored the clips: metrics over steps next to the losses (random weights: no sync
    # is expected, only a judgement).
    for name in ("sync_offset", "sync_abs_offset", "sync_confidence"):
        (point,) = client.get_metric_history(run.info.run_id, f"previews/{name}")
        assert point.step == 3 and isinstance(point.value, float) and point.value == point.value  # not NaN
    methods = {k: v for k, v in run.data.metrics.items() if k.startswith("previews/sync_method/")}
    assert sum(methods.values()) == 2 and set(methods) <= {f"previews/sync_method/{m}" for m in SYNC_METHODS}
    # CLAP text-audio: the mean of the evaluation's scorer over each logged clip against its own prompt's
    # audio description (not the whole prompt).
    (point,) = client.get_metric_history(run.info.run_id, "previews/clap_score")
    clips = [Path(client.download_artifacts(run.info.run_id, p, str(tmp_path / "download"))) for p in logged]
    expected = ClapScorer(tiny_clap)([(c, audio_text(p)) for c, p in zip(clips, callback["init_args"]["prompts"])])
    assert point.step == 3 and isinstance(point.value, float)
    assert point.value == pytest.approx(sum(expected) / 2, abs=1e-3)


def test_sample_callback_refuses_a_missing_clap_model_before_training(tmp_path):
    with pytest.raises(ValueError, match="clap_model .*nope"):
        SampleVideoCallback(prompts=["a flash"], previews=True, clap_model=str(tmp_path / "nope"))


def test_sample_callback_judges_a_clip_with_a_known_offset(tmp_path):
    """The callback's judge on flash-and-click clips (the sync judges' test media) in sync and with the
    clicks 3 frames late: the onset judge decides both (no face), offsets 0 and -3 frames."""
    callback = SampleVideoCallback(prompts=["a flash"], previews=True)
    clips = [make_flash_clip(tmp_path / f"shift{shift}.mp4", shift, fps=24, seconds=4.0)[0] for shift in (0, 3)]
    judged = [callback.judge(clip) for clip in clips]
    assert [(j.method, j.offset) for j in judged] == [("onset", 0), ("onset", -3)]
    assert all(j.confidence > OnsetJudge().min_confidence for j in judged)
    metrics = callback.sync_metrics(judged)
    assert metrics["previews/sync_offset"] == -1.5 and metrics["previews/sync_abs_offset"] == 1.5
    assert metrics["previews/sync_method/onset"] == 2.0 and "previews/sync_method/mouth" not in metrics


def test_guided_velocity_runs_on_the_tiny_model(tiny_model):
    x = tiny_inputs(batch=1)
    cond = tiny_conditioning()
    v, a = guided_velocity(tiny_model, x["video"], x["audio"], torch.tensor([500.0]), cond,
                           SamplerConfig(skip_layer=1), first_frame_clean=True)
    assert v.shape == x["video"].shape and a.shape == x["audio"].shape and v.dtype == torch.float32


# ---------------------------------------------------------------------------- directional generation


def stream_md5(path: Path, stream: str) -> str:
    """MD5 of a stream's packets as stored (ffmpeg's md5 muxer over a stream copy)."""
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:{stream}:0", "-c", "copy",
                             "-f", "md5", "-"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("task", ["video_to_audio", "audio_to_video"])
def test_directional_generation_keeps_the_given_stream_unchanged(tmp_path, tiny_assets, task):
    if task == "video_to_audio":  # a clip with its own sound, which the output must replace
        given = tmp_path / "given.mp4"
        sources = ["-f", "lavfi", "-i", "testsrc=size=64x32:rate=24:duration=0.375", "-f", "lavfi", "-i",
                   "sine=frequency=440:sample_rate=16000:duration=0.375", "-c:v", "libx264", "-c:a", "aac"]
        kept, made = "v", "a"
    else:
        given = tmp_path / "given.wav"
        sources = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=0.375"]
        kept, made = "a", "v"
    subprocess.run(["ffmpeg", "-v", "error", *sources, str(given)], check=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A woman says <S>hello<E>.\n")
    config = generate_config(tiny_assets, prompts, tmp_path / "out", task=task,
                             **{"video" if kept == "v" else "audio": str(given)})
    (tmp_path / "generate.yaml").write_text(yaml.safe_dump(config))
    (written,) = run_generate(parse_config(["--config", str(tmp_path / "generate.yaml")]))
    assert written.suffix == (".mp4" if kept == "v" else ".mov")  # PCM wav does not go into an mp4
    assert stream_md5(written, kept) == stream_md5(given, kept)
    frames, video_seconds, audio_seconds = probe_av(written)
    assert frames == 9 and audio_seconds == pytest.approx(0.375, abs=0.04)
    if made == "a":
        assert stream_md5(written, "a") != stream_md5(given, "a")
    manifest = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert manifest[0]["file"] == written.name


def test_directional_generation_options_are_checked_before_loading(tmp_path):
    with pytest.raises(ValueError, match="needs --video"):
        parse_config(["--checkpoint", "x", "--prompts", "y", "--task", "video_to_audio"])
    with pytest.raises(ValueError, match="only used with task=audio_to_video"):
        parse_config(["--checkpoint", "x", "--prompts", "y", "--audio", "a.wav"])
    with pytest.raises(ValueError, match="no such file"):
        parse_config(["--checkpoint", "x", "--prompts", "y", "--task", "audio_to_video", "--audio", str(tmp_path / "a.wav")])


@pytest.mark.parametrize("given", ["video", "audio"])
def test_sampling_keeps_the_given_modality_and_shows_it_to_the_model_at_t0(tiny_model, given):
    x = tiny_inputs(batch=1)
    video_noise, audio_noise = initial_noise(1, tuple(x["video"].shape[1:]), tuple(x["audio"].shape[1:]), 0, "cpu")
    times: list[tuple[float, float]] = []
    hook = tiny_model.register_forward_pre_hook(
        lambda m, args, kwargs: times.append((float(args[2][0]), float(kwargs["audio_t"][0]))), with_kwargs=True)
    try:
        video, audio = sample(tiny_model, video_noise, audio_noise, tiny_conditioning(), SamplerConfig(steps=3),
                              **{f"given_{given}": x[given]})
    finally:
        hook.remove()
    out = {"video": video, "audio": audio}
    torch.testing.assert_close(out[given], x[given].float(), rtol=0, atol=0)
    other = "audio" if given == "video" else "video"
    assert not torch.allclose(out[other], (audio_noise if other == "audio" else video_noise))
    clean, sampled = (0, 1) if given == "video" else (1, 0)
    assert all(t[clean] == 0 for t in times) and all(t[sampled] > 0 for t in times)


def test_a_photo_stored_sideways_is_turned_as_its_exif_orientation_says(tmp_path: Path) -> None:
    """Image-to-video from a phone photo: the first frame must be the picture as the phone shows it."""
    from ovi_pl.generation.components import ClipGeometry
    from ovi_pl.generation.pipeline import load_image

    rng = np.random.default_rng(0)
    upright = np.kron(rng.integers(0, 256, (9, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 144x256 blocks
    Image.fromarray(upright).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored picture is to be turned a quarter turn clockwise
    Image.fromarray(np.rot90(upright)).save(tmp_path / "sideways.png", exif=exif)  # stored turned the other way
    geometry = ClipGeometry(height=144, width=256, num_frames=5)
    shown, expected = load_image(tmp_path / "sideways.png", geometry), load_image(tmp_path / "upright.png", geometry)
    assert shown.shape == expected.shape == (1, 3, 1, 144, 256)
    assert torch.equal(shown, expected)
