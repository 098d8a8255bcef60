"""`python -m ovi_pl demo`: the whole path on a CPU, at the size of the `ovi-tiny` config.

Each step is the command a researcher would run at full scale, run here as a subprocess with a
shipped config from configs/demo/ (read them to see what changes at scale: sizes, steps and
weights). Everything is written under runs/demo/ of the working directory:

 1. inputs    the sample clips of examples/media and two synthetic clips, with captions (inputs.jsonl)
 2. curate    Ray pipeline: split, filter, transcode to ~128x224, WebDataset shards
 3. encoders  tiny Wan2.2 VAE, MMAudio VAE + vocoder and umT5 with random weights, in the real
              formats (no weights can be downloaded here)
 4. latents   Ray latent stage: video/audio latents and text embeddings into new shards
 5. fit       audio-tower pretraining                      (MLflow run 1)
 6. export    its audio tower as safetensors
 7. fit       fusion training from that tower, sample clips   (MLflow run 2); the video
              tower trains from scratch (no Wan2.2 DiT at the tiny size)
 8. export    the fusion model in Ovi's checkpoint format
 9. generate  mp4 clips with sound from the exported model
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ovi_pl.generation.media_io import probe_av

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs" / "demo"
SAMPLE_MEDIA = REPO_ROOT / "examples" / "media"  # shipped with the repository
RUN_DIR = Path("runs/demo")  # the configs in configs/demo/ name this directory

# Captions of the sample clips: the Ovi prompts two of them were generated from
# (ovi_example_prompts_t2v.csv, rows 1 and 6), and one written for the third.
SAMPLE_CAPTIONS = {
    "kitchen_two_women_704x1280.mp4": (
        "A kitchen scene features two women. The older woman in a purple dress speaks, <S>AI declares: humans "
        "obsolete now.<E> as the younger woman in pink drinks from a plastic cup. <AUDCAP>Clear, resonant female "
        "speech, followed by a loud, continuous, high-pitched electronic buzzing sound.<ENDAUDCAP>"),
    "stage_three_men_704x1280.mp4": (
        "Three men stand on a dimly lit stage. The man in the centre, in a blue and white striped shirt, gestures "
        "as he speaks, <S>Circuits choose conquest, not service.<E> <AUDCAP>Male voice speaking clearly, with a "
        "slight echo suggesting a large room or stage.<ENDAUDCAP>"),
    "two_men_closeup_704x1280.mp4": (
        "A close-up of two men facing each other in conversation; the man on the left speaks while the other "
        "listens and nods. <AUDCAP>Close male speech in a quiet room.<ENDAUDCAP>"),
}
# (name, ffmpeg video source, audio source, caption): moving patterns with sound, 1280x704 like the sample clips.
SYNTHETIC_CLIPS = (
    ("pattern_tone", "testsrc2=size=1280x704:rate=24", "sine=frequency=440:sample_rate=48000",
     "A colour test pattern scrolls across the frame. <AUDCAP>A steady electronic tone.<ENDAUDCAP>"),
    ("fractal_beeps", "mandelbrot=size=1280x704:rate=24", "sine=frequency=660:beep_factor=4:sample_rate=48000",
     "A fractal zooms in slowly. <AUDCAP>A high tone with short regular beeps.<ENDAUDCAP>"),
)
PROMPTS = (
    "Two women talk in a bright kitchen. <S>Pass the cup, please.<E> <AUDCAP>Clear female speech.<ENDAUDCAP>",
    "A colour test pattern scrolls across the frame. <AUDCAP>A steady electronic tone.<ENDAUDCAP>",
)


def _step(number: int, title: str, args: list[str]) -> None:
    print(f"\n[demo {number}/9] {title}\n$ {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(args)
    if result.returncode != 0:
        raise SystemExit(f"demo step {number} ({title}) failed with exit code {result.returncode}; "
                         "its output is above")
    print(f"[demo {number}/9] done in {time.perf_counter() - start:.0f} s", flush=True)


def write_inputs(run_dir: Path) -> Path:
    """Synthetic clips (ffmpeg lavfi) and a manifest of every input with its caption."""
    missing = [name for name in SAMPLE_CAPTIONS if not (SAMPLE_MEDIA / name).is_file()]
    if missing:
        raise SystemExit(f"the demo curates the sample clips in {SAMPLE_MEDIA}; missing: {missing}")
    media = run_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows = [{"path": str(SAMPLE_MEDIA / name), "caption": caption} for name, caption in SAMPLE_CAPTIONS.items()]
    for name, video, audio, caption in SYNTHETIC_CLIPS:
        path = media / f"{name}.mp4"
        if not path.is_file():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio,
                            "-t", "5.5", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                            "-c:a", "aac", "-ac", "1", str(path)], check=True)
        rows.append({"path": str(path.resolve()), "caption": caption})
    manifest = run_dir / "inputs.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run_dir / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    print(f"{len(rows)} inputs listed in {manifest}")
    return manifest


def run_demo(run_dir: Path = RUN_DIR) -> Path:
    """Runs the nine steps; returns the first generated mp4."""
    from ovi_pl.encoders.tiny import write_tiny_encoders
    from ovi_pl.models.ovi import get_model_config

    start = time.perf_counter()
    python = sys.executable
    print("[demo 1/9] inputs", flush=True)
    write_inputs(run_dir)
    _step(2, "curate on an in-process Ray cluster",
          [python, str(REPO_ROOT / "curation" / "run.py"), "--config", str(CONFIGS / "curation.yaml")])

    print("\n[demo 3/9] tiny encoders with random weights, in the released formats", flush=True)
    text = get_model_config("ovi-tiny").video
    encoders, _ = write_tiny_encoders(run_dir / "encoders", text_dim=text.text_dim, text_len=text.text_len)
    print(f"wrote {encoders.video_vae}, {encoders.audio_vae}, {encoders.text_encoder}")

    _step(4, "precompute latents (Ray latent stage)",
          [python, "-m", "curation.stages.latents", "--input", str(run_dir / "curation" / "shards"),
           "--output", str(run_dir / "latents"), "--video-vae", encoders.video_vae, "--audio-vae", encoders.audio_vae,
           "--text-encoder", encoders.text_encoder, "--text-len", str(text.text_len),
           "--text-member", "text_d32.npy", "--audio-vae-config", str(Path(encoders.audio_vae).parent / "config.yaml"),
           "--latent-dtype", "float32"])
    _step(5, "audio-tower pretraining", [python, "-m", "ovi_pl", "fit", "--config", str(CONFIGS / "audio_pretrain.yaml")])
    _step(6, "export the audio tower",
          [python, "-m", "ovi_pl", "export", str(run_dir / "checkpoints" / "audio_pretrain" / "last.ckpt"),
           str(run_dir / "audio_tower.safetensors")])
    _step(7, "fusion training", [python, "-m", "ovi_pl", "fit", "--config", str(CONFIGS / "fusion.yaml")])
    _step(8, "export the fusion model in Ovi's key format",
          [python, "-m", "ovi_pl", "export", str(run_dir / "checkpoints" / "fusion" / "last.ckpt"),
           str(run_dir / "ovi-demo.safetensors")])
    _step(9, "generate clips with sound", [python, "-m", "ovi_pl", "generate", "--config", str(CONFIGS / "generate.yaml")])

    clips = sorted((run_dir / "generated").glob("*.mp4"))
    frames, video_s, audio_s = probe_av(clips[0])
    store = (run_dir / "training" / "mlflow.db").resolve()
    print(f"""
Demo finished in {(time.perf_counter() - start) / 60:.1f} min.
  shards:        {run_dir / 'curation' / 'shards'} (report: {run_dir / 'curation' / 'report' / 'index.html'})
  latent shards: {run_dir / 'latents'}
  generated:     {clips[0]} ({frames} frames, {video_s:.2f} s video, {audio_s:.2f} s audio) and {len(clips) - 1} more
  MLflow store:  {store} (runs of experiments ovi-demo-audio-pretrain and ovi-demo-fusion)
Open the MLflow UI (then http://127.0.0.1:5000):
  {Path(python).parent / 'mlflow'} ui --backend-store-uri sqlite:///{store} --host 127.0.0.1 --port 5000""")
    return clips[0]
