"""The latent curation stage on a real Ray, its shards against data_specs, and training on them."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from curation.stages.latents import LatentStage, run_latent_stage, shard_rows
from data_specs import validate_shards
from data_specs.lineage import DATASET_FILE, read_dataset_file, write_dataset_file
from ovi_pl.data import EncoderPaths, ShardDataModule
from ovi_pl.lineage_cli import _describe_dataset
from ovi_pl.training.modules import FusionTraining, OptimizerConfig, ParallelConfig
from ovi_pl.training.strategy import FSDP2Strategy

from test_datamodule import (TEXT_LEN, flac_bytes, make_clip, sample_json, tiny_encoder_paths,  # noqa: F401
                             write_shard)
from test_encoders import tiny_audio_ckpts, tiny_video_vae_dir  # noqa: F401

from ovi_pl.encoders.tiny import TINY_AUDIO, write_tiny_text_encoder

TEXT_MEMBER = "text_d32.npy"  # data_specs pins text_embedding.npy to umT5-xxl's 4096-d; ovi-tiny takes 32-d


@pytest.fixture(scope="module")
def input_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 shards: 9-frame clips, wide and tall, audio in the mp4 or in a .flac member, one audio-only sample."""
    clips = tmp_path_factory.mktemp("clips")
    wide, tall = make_clip(clips / "wide.mp4", 128, 64), make_clip(clips / "tall.mp4", 64, 128)
    d = tmp_path_factory.mktemp("input")
    n = 0
    for s in range(4):
        samples = []
        for i in range(2):
            key = f"s{n:02d}"
            w, h, mp4 = (128, 64, wide) if n % 3 else (64, 128, tall)
            sample = {"__key__": key, "mp4": mp4, "json": sample_json(key, w, h, 9)}
            if n % 4 == 1:
                sample["flac"] = flac_bytes(9 / 24)
            samples.append(sample)
            n += 1
        (d / "part").mkdir(exist_ok=True)
        write_shard(d / "part" / f"in-{s:03d}.tar", samples)
    audio_only = {"__key__": "speech", "flac": flac_bytes(1.0), "json": sample_json("speech", 0, 0, 24, kind="audio_only")}
    tar = d / "part" / "in-000.tar"
    with tarfile.open(tar) as t:  # append to the first shard
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(tar, "w") as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data))
        for ext in ("flac", "json"):
            info = tarfile.TarInfo(f"speech.{ext}")
            info.size = len(audio_only[ext])
            t.addfile(info, io.BytesIO(audio_only[ext]))
    assert validate_shards([d]).ok, validate_shards([d]).bad_samples
    manifest = d / "manifest.parquet"  # stands for the curation run's manifest: only its bytes enter the id
    manifest.write_bytes(b"four shards of nine samples")
    write_dataset_file(d, manifest, {"scenes": {"threshold": 27.0}}, {"kept": 9, "shards": 4}, curation_dir=d)
    return d


@pytest.fixture(scope="module")
def latent_output(input_shards: Path, tiny_encoder_paths: EncoderPaths, tmp_path_factory) -> tuple[Path, list]:
    import ray

    out = tmp_path_factory.mktemp("latents")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        rows = run_latent_stage(input_shards, out, LatentStage(tiny_encoder_paths, text_member=TEXT_MEMBER))
    finally:
        ray.shutdown()
    return out, rows


def test_stage_on_ray_writes_valid_shards(latent_output: tuple[Path, list], input_shards: Path) -> None:
    out, rows = latent_output
    assert [r.get("status", "kept") for r in rows] == ["kept"] * 4, rows
    assert sum(r["samples"] for r in rows) == 9 and not any(r["failed"] for r in rows)
    report = validate_shards([out])
    assert report.ok, report.bad_samples
    assert report.num_samples == 9 and report.kinds == {"audio_video": 8, "audio_only": 1}
    assert sorted(p.relative_to(out) for p in out.rglob("*.tar")) == sorted(
        p.relative_to(input_shards) for p in input_shards.rglob("*.tar"))
    assert not list(out.rglob(".*.tmp"))
    with tarfile.open(out / "part" / "in-000.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("s00.json").read())
    assert {"s00.mp4", "s00.json", "s00.video_latents.npy", "s00.audio_latents.npy", f"s00.{TEXT_MEMBER}"} <= set(names)
    shapes = {m["name"]: m["shape"] for m in meta["latents"]}
    assert shapes["video_latents.npy"] == [48, 3, 8, 4]  # tall 64x128 clip, 9 frames
    assert shapes["audio_latents.npy"] == [11, 20] and shapes[TEXT_MEMBER][1] == 32 and shapes[TEXT_MEMBER][0] <= 16


def test_latent_shards_trace_back_to_the_curated_set(latent_output: tuple[Path, list], input_shards: Path) -> None:
    out, _ = latent_output
    source, record = read_dataset_file(input_shards / DATASET_FILE), read_dataset_file(out / DATASET_FILE)
    assert record.derived_from == {"dataset_id": source.dataset_id, "shards_dir": source.shards_dir}
    assert record.dataset_id != source.dataset_id and record.curation_dir == source.curation_dir
    assert record.summary == {"shards": 4, "samples": 9, "failed_samples": 0, "failed_shards": 0}
    assert record.config["encoders"]["text_len"] == TEXT_LEN and record.config["text_member"] == TEXT_MEMBER
    lines = _describe_dataset({"dataset_id": record.dataset_id, "shards_dir": record.shards_dir})
    assert any(f"latents stage (shards 4, samples 9" in line and source.dataset_id in line for line in lines), lines
    assert any(line.strip() == "counts: kept 9, shards 4" for line in lines), lines


def test_datamodule_reads_the_stage_output(latent_output: tuple[Path, list]) -> None:
    out, _ = latent_output
    dm = ShardDataModule(str(out), mode="latent", batch_size=2, num_workers=0, epochs=1, return_keys=True,
                         text_member=TEXT_MEMBER, text_len=TEXT_LEN)
    keys = []
    for batch in dm.train_dataloader():
        batch = dm.on_after_batch_transfer(batch, 0)
        keys += batch["keys"]
        assert batch["video_latents"].shape[1:3] == (48, 3) and batch["audio_latents"].shape[2] == 20
    assert sorted(keys) == [f"s{i:02d}" for i in range(8)]  # the audio-only sample is not for fusion
    audio = ShardDataModule(str(out), mode="latent", modality="audio", batch_size=9, num_workers=0, epochs=1,
                            text_member=TEXT_MEMBER, text_len=TEXT_LEN)
    (batch,) = list(audio.train_dataloader())
    assert batch["audio_length"].tolist().count(31) == 1  # 1 s of speech -> 31 latents, beside 8 clips of 11


def test_fusion_training_runs_on_the_stage_output(latent_output: tuple[Path, list], tmp_path: Path) -> None:
    out, _ = latent_output
    dm = ShardDataModule(str(out), mode="latent", batch_size=2, num_workers=0, text_member=TEXT_MEMBER,
                         text_len=TEXT_LEN)
    module = FusionTraining(model_config="ovi-tiny", freeze_preset="full", optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
                            parallel=ParallelConfig(compute_dtype="float32", activation_checkpointing=False),
                            ema_decay=None)
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=FSDP2Strategy(), precision="32-true", max_steps=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert dm.state_dict()["batches_per_rank"] == 2


def test_stage_writes_the_well_known_text_embedding_and_skips_bad_samples(
    tmp_path: Path, tiny_video_vae_dir: Path, tiny_audio_ckpts, input_shards: Path  # noqa: F811
) -> None:
    """In process, no Ray: a 4096-d text encoder writes text_embedding.npy as data_specs defines it."""
    text = write_tiny_text_encoder(tmp_path / "umt5_4096", d_model=4096)
    paths = EncoderPaths(video_vae=str(tiny_video_vae_dir), audio_vae=str(tiny_audio_ckpts[0]),
                         text_encoder=str(text), text_len=TEXT_LEN, audio_config=TINY_AUDIO)
    src = tmp_path / "in"
    with tarfile.open(input_shards / "part" / "in-001.tar") as tar:
        good = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.name.startswith("s02.")}
    broken = {"__key__": "broken", "mp4": b"\0\0\0\x18ftypmp42 broken", "json": sample_json("broken", 128, 64, 9)}
    src.mkdir()
    write_shard(src / "x.tar", [{"__key__": "s02", **good}, broken])
    stage = LatentStage(paths)
    (row,) = shard_rows(src, tmp_path / "out")
    (result,) = stage.process_batch([row])
    assert result["samples"] == 1 and [f["key"] for f in result["failed"]] == ["broken"]
    report = validate_shards([tmp_path / "out"])
    assert report.ok and report.num_samples == 1, report.bad_samples
    with tarfile.open(tmp_path / "out" / "x.tar") as tar:
        embedding = np.load(io.BytesIO(tar.extractfile("s02.text_embedding.npy").read()), allow_pickle=False)
    assert embedding.shape[1] == 4096 and embedding.dtype == np.float16
    assert stage.process_batch([row])[0].get("skipped_existing")  # reruns leave finished shards alone
