"""`python -m ovi_pl demo`, the README's main command, end to end in a fresh working directory:
real Ray curation of the shared clips and synthetic ones, latents from tiny encoders, two
training runs through the CLI, exports, generation, and the MLflow store it points the user to."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from mlflow.tracking import MlflowClient

from data_specs import find_shards, iter_shard_samples
from ovi_pl.generation.media_io import probe_av


def test_every_clip_is_curated_and_encoded(demo_run):
    workdir, _ = demo_run
    summary = json.loads((workdir / "runs/demo/curation/report/summary.json").read_text())
    assert (summary["inputs"], summary["kept"], summary["quarantined"]) == (5, 5, 0), summary
    samples = [json.loads(sample.members["json"]) for shard in find_shards([workdir / "runs/demo/latents"])
               for sample in iter_shard_samples(shard)]
    assert len(samples) == 5
    check = subprocess.run([sys.executable, "-m", "data_specs", "validate", str(workdir / "runs/demo/latents")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    for meta in samples:
        assert {entry["name"] for entry in meta["latents"]} >= {"video_latents.npy", "audio_latents.npy", "text_d32.npy"}
        assert (meta["media"]["video"]["height"], meta["media"]["video"]["width"]) == (128, 224)


def test_both_training_runs_are_in_the_printed_mlflow_store(demo_run):
    workdir, stdout = demo_run
    command = re.search(r"mlflow ui --backend-store-uri (sqlite:///\S+) --host 127\.0\.0\.1 --port \d+", stdout)
    assert command, stdout[-2000:]
    client = MlflowClient(tracking_uri=command.group(1))
    runs = {e.name: client.search_runs([e.experiment_id]) for e in client.search_experiments()
            if e.name.startswith("ovi-demo")}
    assert sorted(runs) == ["ovi-demo-audio-pretrain", "ovi-demo-fusion"]
    (audio,), (fusion,) = runs["ovi-demo-audio-pretrain"], runs["ovi-demo-fusion"]
    assert audio.info.run_name != fusion.info.run_name
    assert {"train/loss_audio", "val/loss"} <= set(audio.data.metrics)
    assert {"train/loss_video", "train/loss_audio", "val/loss", "train/device/samples_per_sec"} <= set(fusion.data.metrics)
    # The fusion step trains the (random) video tower too: both validation losses fall from step 15 to 30.
    for loss in ("val/loss_video", "val/loss_audio"):
        first, last = (m.value for m in sorted(client.get_metric_history(fusion.info.run_id, loss), key=lambda m: m.step))
        assert last < first, (loss, first, last)
    sampled = client.list_artifacts(fusion.info.run_id, "samples/step_0000015")
    assert len(sampled) == 2 and all(a.path.endswith(".mp4") for a in sampled)


def test_generated_clips_have_the_requested_length_and_sound(demo_run):
    workdir, _ = demo_run
    clips = sorted((workdir / "runs/demo/generated").glob("*.mp4"))
    assert len(clips) == 2
    for clip in clips:
        frames, video_seconds, audio_seconds = probe_av(clip)
        assert frames == 49 and abs(audio_seconds - video_seconds) < 0.05
    exported = workdir / "runs/demo/ovi-demo.safetensors"
    assert exported.is_file() and (workdir / "runs/demo/audio_tower.safetensors").is_file()
