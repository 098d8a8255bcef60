"""ShardDataModule: raw and latent shards into the batches the training modules consume.

Shards are built here with webdataset.TarWriter from the shared real clips and from small
ffmpeg-made clips; encoders are the tiny random-weight models of test_encoders in their
released file formats.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import shard_resume_fit
from conftest import DISTRIBUTED_ENV, ROOT, SAMPLE_CLIPS
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from ovi_pl.data import EncoderPaths, ShardDataModule
from ovi_pl.encoders import read_av_clip

# Tiny encoders in the released formats (module-scoped fixtures) and their audio config.
from ovi_pl.encoders.tiny import TINY_AUDIO, write_tiny_text_encoder
from test_encoders import tiny_audio_ckpts, tiny_video_vae_dir  # noqa: F401

MEDIA = list(SAMPLE_CLIPS)
CAPTION = "A man says <S>hello<E> in the kitchen. <AUDCAP>Male voice speaking.<ENDAUDCAP>"
TEXT_DIM, TEXT_LEN = 32, 16  # ovi-tiny's text geometry


# ---------------------------------------------------------------------------- shard builders


def make_clip(path: Path, width: int, height: int, frames: int = 9, audio: bool = True) -> bytes:
    """An h264 mp4 of testsrc2 (+ a 440 Hz aac track) at 24 fps."""
    seconds = frames / 24
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24:duration={seconds}"]
    if audio:  # a little longer than the video, as real containers often are
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds + 0.1:.3f}"]
    cmd += ["-pix_fmt", "yuv420p", "-c:v", "libx264"]
    cmd += ["-c:a", "aac", "-ac", "1", "-ar", "16000"] if audio else []
    subprocess.run([*cmd, str(path)], check=True)
    return path.read_bytes()


def flac_bytes(seconds: float, freq: float = 330.0) -> bytes:
    import soundfile

    t = np.arange(round(seconds * 16000)) / 16000
    buf = io.BytesIO()
    soundfile.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format="FLAC")
    return buf.getvalue()


def sample_json(key: str, width: int, height: int, num_frames: int, latents: list[dict] | None = None,
                kind: str = "audio_video", caption: str = CAPTION) -> bytes:
    media: dict = {"duration_s": round(num_frames / 24, 6), "audio": {"sample_rate": 16000, "channels": 1}}
    if kind == "audio_video":
        media["video"] = {"fps": 24, "num_frames": num_frames, "width": width, "height": height}
    meta = {"schema_version": "1.0", "key": key, "kind": kind, "caption": caption, "media": media,
            "source": {"uri": f"test://{key}", "start_s": 0.0, "end_s": num_frames / 24},
            "latents": latents or []}
    return json.dumps(meta).encode()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_shard(path: Path, samples: list[dict]) -> Path:
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def latent_sample(key: str, mp4: bytes, width: int, height: int, seed: int, audio_len: int = 11,
                  text_tokens: int = 5) -> dict:
    """A 9-frame clip with random latents at its geometry ([48, 3, h/16, w/16]) and a 32-d text embedding."""
    rng = np.random.default_rng(seed)
    arrays = {
        "video_latents.npy": rng.standard_normal((48, 3, height // 16, width // 16)).astype(np.float16),
        "audio_latents.npy": rng.standard_normal((audio_len, 20)).astype(np.float32),
        "text_d32.npy": rng.standard_normal((text_tokens, TEXT_DIM)).astype(np.float16),
    }
    declared = [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()]
    return {"__key__": key, "mp4": mp4, "json": sample_json(key, width, height, 9, declared),
            **{n: npy(a) for n, a in arrays.items()}}


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("clips")
    return {"wide": make_clip(d / "wide.mp4", 128, 64), "tall": make_clip(d / "tall.mp4", 64, 128)}


@pytest.fixture(scope="module")
def latent_shards(tmp_path_factory: pytest.TempPathFactory, small_clips: dict[str, bytes]) -> Path:
    """8 shards x 3 samples, two latent shapes (wide 4x8, tall 8x4) mixed in every shard."""
    d = tmp_path_factory.mktemp("latent_shards")
    for s in range(8):
        samples = []
        for i in range(3):
            n = s * 3 + i
            wide = n % 3 != 2
            w, h = (128, 64) if wide else (64, 128)
            samples.append(latent_sample(f"clip{n:03d}", small_clips["wide" if wide else "tall"], w, h, seed=n,
                                         audio_len=9 + n % 4, text_tokens=3 + n % 5))
        write_shard(d / f"train-{s:03d}.tar", samples)
    return d


def all_keys(n: int = 24) -> set[str]:
    return {f"clip{i:03d}" for i in range(n)}


def latent_dm(urls: str | list[str], **kwargs) -> ShardDataModule:
    args = dict(mode="latent", batch_size=2, num_workers=0, text_member="text_d32.npy", text_len=TEXT_LEN,
                return_keys=True)
    return ShardDataModule(urls, **{**args, **kwargs})


def fake_trainer(rank: int, world: int, processed: int) -> SimpleNamespace:
    progress = SimpleNamespace(total=SimpleNamespace(processed=processed))
    return SimpleNamespace(global_rank=rank, world_size=world, loggers=[], global_step=processed,
                           distributed_sampler_kwargs={"rank": rank, "num_replicas": world},
                           fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))


def keys_of(loader, limit: int | None = None) -> list[list[str]]:
    out = []
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        out.append(batch["keys"])
    return out


@pytest.fixture(scope="module")
def tiny_encoder_paths(tmp_path_factory, tiny_video_vae_dir, tiny_audio_ckpts) -> EncoderPaths:  # noqa: F811
    text = write_tiny_text_encoder(tmp_path_factory.mktemp("umt5_32"), d_model=TEXT_DIM)
    return EncoderPaths(video_vae=str(tiny_video_vae_dir), audio_vae=str(tiny_audio_ckpts[0]),
                        text_encoder=str(text), text_len=TEXT_LEN, audio_config=TINY_AUDIO)


@pytest.fixture(scope="module")
def real_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared clips as one raw shard each (121 frames, 24 fps, speech)."""
    d = tmp_path_factory.mktemp("real_shards")
    for i, clip in enumerate(MEDIA):
        meta = sample_json(f"real{i}", 1280, 704, 121)
        write_shard(d / f"real-{i:03d}.tar", [{"__key__": f"real{i}", "mp4": clip.read_bytes(), "json": meta}])
    return d


# ---------------------------------------------------------------------------- raw mode


def test_raw_path_decodes_121_frames_and_5_04_s_of_aligned_audio(real_shards: Path) -> None:
    # In a DataLoader worker, as in training (its decoder runs in one thread there).
    dm = ShardDataModule(str(real_shards), mode="raw", batch_size=1, num_workers=1, epochs=1,
                         target_area=64 * 128, return_keys=True)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(MEDIA)
    for batch in batches:
        (frames,) = batch["frames"]  # stacked on the training device, by encode_raw
        assert frames.shape == (3, 121, 64, 128) and frames.dtype == torch.uint8
        assert batch["waveform"].shape == (1, 80_640) and batch["waveform_length"].tolist() == [80_640]
        # Both span the clip from t = 0: 121 frames at 24 fps (5.042 s) and 5.04 s of audio, within a frame.
        assert abs(121 / 24 - 80_640 / 16_000) < 1 / 24
        assert batch["waveform"].square().mean().sqrt() > 1e-3  # speech, not silence
    # Against the encoders' full-size reader (slow, so one clip): the same audio samples, and
    # the same frames resized (the mean colour of every 30th frame agrees).
    batch = batches[0]
    reference = read_av_clip(MEDIA[int(batch["keys"][0].removeprefix("real"))], num_frames=121, fps=24.0)
    torch.testing.assert_close(batch["waveform"][0], reference.audio, rtol=0, atol=0)
    ref = reference.video[:, ::30].float().mean(dim=(1, 2, 3))
    ours = batch["frames"][0][:, ::30].float().mean(dim=(1, 2, 3))
    assert (ref - ours).abs().max() < 4.0


def test_raw_mode_encodes_batches_of_the_training_shapes(real_shards: Path, tiny_encoder_paths: EncoderPaths) -> None:
    # Encoders built from local paths in setup(); 9 frames keep the tiny VAE quick on CPU.
    dm = ShardDataModule(str(real_shards), mode="raw", batch_size=2, num_workers=0, num_frames=9,
                         target_area=64 * 128, encoders=tiny_encoder_paths, text_len=TEXT_LEN)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(batch) == {"video_latents", "audio_latents", "audio_length", "text_embedding"}
    # 9 frames -> 1 + 8/4 latent frames; 64x128 -> 4x8; 0.38 s of audio -> 11 latents at 31.25/s.
    assert batch["video_latents"].shape == (2, 48, 3, 4, 8)
    assert batch["audio_latents"].shape == (2, 11, 20) and batch["audio_length"].tolist() == [11, 11]
    assert batch["audio_length"].dtype == torch.int64
    text = batch["text_embedding"]
    assert text.shape[0] == 2 and text.shape[1] <= TEXT_LEN and text.shape[2] == TEXT_DIM
    assert all(torch.isfinite(batch[k]).all() for k in ("video_latents", "audio_latents", "text_embedding"))


def test_raw_mode_buckets_mixed_aspect_ratios(tmp_path: Path, small_clips: dict[str, bytes]) -> None:
    samples = []
    for i in range(6):
        shape = "wide" if i % 2 else "tall"
        w, h = (128, 64) if shape == "wide" else (64, 128)
        samples.append({"__key__": f"c{i}", "mp4": small_clips[shape], "json": sample_json(f"c{i}", w, h, 9)})
    write_shard(tmp_path / "mixed.tar", samples)
    dm = ShardDataModule(str(tmp_path / "mixed.tar"), mode="raw", batch_size=3, num_workers=0, num_frames=9,
                         target_area=64 * 128, epochs=1, return_keys=True)
    batches = list(dm.train_dataloader())
    shapes = sorted([tuple(f.shape) for f in b["frames"]] for b in batches)
    assert shapes == [[(3, 9, 64, 128)] * 3, [(3, 9, 128, 64)] * 3]
    assert sorted(k for b in batches for k in b["keys"]) == [f"c{i}" for i in range(6)]


# ---------------------------------------------------------------------------- latent mode


def test_latent_mode_batches_have_the_training_shapes(latent_shards: Path) -> None:
    dm = latent_dm(str(latent_shards / "train-{000..007}.tar"), batch_size=2, return_keys=False)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(batch) == {"video_latents", "audio_latents", "audio_length", "text_embedding"}
    video, audio, lengths, text = (batch[k] for k in ("video_latents", "audio_latents", "audio_length",
                                                      "text_embedding"))
    assert video.shape[:3] == (2, 48, 3) and video.shape[3:] in ((4, 8), (8, 4)) and video.dtype == torch.float32
    assert audio.shape[0] == 2 and audio.shape[2] == 20 and lengths.dtype == torch.int64
    assert audio.shape[1] == int(lengths.max())
    for i, n in enumerate(lengths.tolist()):
        assert audio[i, n:].eq(0).all() and audio[i, :n].abs().amax(dim=-1).gt(0).all()
    assert text.shape[0] == 2 and text.shape[2] == TEXT_DIM and text.shape[1] <= TEXT_LEN

    audio_dm = latent_dm(str(latent_shards), modality="audio", batch_size=4, return_keys=False)
    batch = audio_dm.on_after_batch_transfer(next(iter(audio_dm.train_dataloader())), 0)
    assert set(batch) == {"audio_latents", "audio_length", "text_embedding"}  # what AudioPretraining reads
    assert batch["audio_latents"].shape[0] == 4  # audio-only batches ignore video shapes


def test_latent_buckets_give_batches_of_one_shape_covering_every_sample(latent_shards: Path) -> None:
    dm = latent_dm(str(latent_shards), batch_size=3, epochs=1)
    seen = []
    for batch in dm.train_dataloader():
        grid = batch["video_latents"].shape[3:]
        assert batch["video_latents"].shape[0] <= 3
        assert grid in ((4, 8), (8, 4))
        seen += batch["keys"]
    assert sorted(seen) == sorted(all_keys())


def test_two_ranks_by_two_workers_see_disjoint_samples_covering_the_set(latent_shards: Path) -> None:
    dm = latent_dm(str(latent_shards), epochs=1, num_workers=2)
    per_rank = []
    for rank in range(2):
        loader = DataLoader(dm.train_stream(rank=rank, world_size=2), batch_size=None, num_workers=2)
        per_rank.append([k for keys in keys_of(loader) for k in keys])
    assert all(len(keys) == len(set(keys)) for keys in per_rank)
    assert not set(per_rank[0]) & set(per_rank[1])
    assert set(per_rank[0]) | set(per_rank[1]) == all_keys()


def test_same_seed_same_order_other_seed_other_order(latent_shards: Path) -> None:
    def order(seed: int) -> list[list[str]]:
        return keys_of(latent_dm(str(latent_shards), seed=seed, epochs=2).train_dataloader())

    first = order(3)
    assert first == order(3)
    assert first != order(4)
    epoch_keys = [k for keys in first for k in keys]
    assert sorted(epoch_keys) == sorted(list(all_keys()) * 2)  # two epochs, each sample once per epoch


def global_order(shards: Path, world: int, batches_per_rank: int, **kwargs) -> list[list[str]]:
    """The batches `world` ranks consume in `batches_per_rank` steps, in global order (step by step, rank by rank)."""
    per_rank = []
    for rank in range(world):
        dm = latent_dm(str(shards), seed=1, **kwargs)
        dm.trainer = fake_trainer(rank, world, processed=0)
        per_rank.append(keys_of(dm.train_dataloader(), batches_per_rank))
    return [batch for step in zip(*per_rank) for batch in step]


@pytest.mark.parametrize(("before_world", "after_world", "workers"), [(2, 2, 0), (2, 2, 2), (2, 1, 2), (1, 2, 0)])
def test_resume_continues_without_repeats_or_gaps(latent_shards: Path, before_world: int, after_world: int,
                                                  workers: int) -> None:
    # 24 samples in batches of 2: 12 global batches an epoch; 4 + 8 crosses into the second epoch.
    before, after = 4, 8
    expected = global_order(latent_shards, 1, before + after)
    first = latent_dm(str(latent_shards), num_workers=workers, seed=1)
    first.trainer = fake_trainer(0, before_world, processed=before // before_world)
    head = global_order(latent_shards, before_world, before // before_world, num_workers=workers)
    state = first.state_dict()
    assert state["global_batches"] == before and state["batches_per_rank"] == before // before_world

    resumed_ranks = []
    for rank in range(after_world):
        resumed = latent_dm(str(latent_shards), num_workers=0 if workers else 1, seed=1)  # another worker count
        resumed.trainer = fake_trainer(rank, after_world, processed=before // before_world)
        resumed.load_state_dict(state)
        resumed_ranks.append(keys_of(resumed.train_dataloader(), after // after_world))
    tail = [batch for step in zip(*resumed_ranks) for batch in step]
    assert head + tail == expected
    epoch = [k for keys in expected[:12] for k in keys]
    assert sorted(epoch) == sorted(all_keys())  # the first 12 global batches: every sample once


def test_finite_epochs_give_every_rank_the_same_number_of_batches(latent_shards: Path) -> None:
    # 5 shards for 3 ranks x 2 workers: 10 wide samples (5 batches of 2) and 5 tall (2 + 2 + 1), so
    # 8 global batches an epoch, 16 in two; each rank gets 16 // 3 = 5 and one batch is left out.
    urls = str(latent_shards / "train-{000..004}.tar")
    per_rank = []
    for rank in range(3):
        dm = latent_dm(urls, epochs=2, num_workers=2)
        loader = DataLoader(dm.train_stream(rank=rank, world_size=3), batch_size=None, num_workers=2)
        per_rank.append(keys_of(loader))
    assert [len(batches) for batches in per_rank] == [5, 5, 5]
    seen = [k for batches in per_rank for keys in batches for k in keys]
    # Every sample twice but the one of the left-out batch: the last of the second epoch, the tall
    # bucket's partial batch of one (partial batches close an epoch).
    counts = Counter(seen)
    assert set(counts) == all_keys(15) and sorted(counts.values()) == [1] + [2] * 14


def fit_on_shards(shards: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """tests/shard_resume_fit.py in its own process group (its SIGKILL must not reach pytest)."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, str(ROOT / "tests/shard_resume_fit.py"), str(shards), str(out), *args],
                          env=env, capture_output=True, text=True, timeout=300, start_new_session=True)


def steps_of(out: Path) -> dict[int, dict[int, dict]]:
    """rank -> step -> {"loss", "keys"} as the run recorded them."""
    return {int(f.stem.removeprefix("rank")): {r["step"]: r for r in map(json.loads, f.read_text().splitlines())}
            for f in out.glob("rank*.jsonl")}


def test_a_killed_two_rank_trainer_run_resumes_exactly_on_two_ranks_and_on_one(latent_shards: Path,
                                                                                tmp_path: Path) -> None:
    # 24 samples in batches of 2: 12 global batches an epoch, 6 steps of 2 ranks. Killed as step 7
    # begins, resumed from the checkpoint at step 4: steps 4-6 (across the epoch boundary) are
    # compared with the ones the run took before it died.
    killed = fit_on_shards(latent_shards, tmp_path / "killed", "--max_steps", "8", "--kill_at", "7")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoint = tmp_path / "killed/checkpoints/step=4.ckpt"
    resumed = fit_on_shards(latent_shards, tmp_path / "resumed", "--max_steps", "7", "--ckpt_path", str(checkpoint))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    before, after = steps_of(tmp_path / "killed"), steps_of(tmp_path / "resumed")
    for rank in (0, 1):
        assert sorted(before[rank]) == list(range(7)) and sorted(after[rank]) == [4, 5, 6]
        for step in (4, 5, 6):
            assert after[rank][step] == before[rank][step], (rank, step)  # same samples, same loss

    # The same checkpoint on one rank, in this process, without loader workers: the same global order goes on.
    shard_resume_fit.fit(str(latent_shards), tmp_path / "one_rank", devices=1, workers=0, max_steps=8,
                         ckpt_path=str(checkpoint))
    one_rank = [steps_of(tmp_path / "one_rank")[0][step]["keys"] for step in range(4, 8)]
    assert one_rank == [before[rank][step]["keys"] for step in (4, 5) for rank in (0, 1)]
    epoch = [k for step in range(4) for rank in (0, 1) for k in before[rank][step]["keys"]]
    epoch += [k for keys in one_rank for k in keys]
    assert sorted(epoch) == sorted(all_keys())  # no sample twice, none left out


def test_streamed_shards_are_copied_once_into_the_cache_and_read_like_local_ones(latent_shards: Path,
                                                                                   tmp_path: Path) -> None:
    urls = [f"pipe:cat {latent_shards}/train-{s:03d}.tar" for s in range(2)]
    local = keys_of(latent_dm(str(latent_shards / "train-{000..001}.tar"), epochs=1).train_dataloader())
    streamed = latent_dm(urls, epochs=1, cache_dir=str(tmp_path / "cache"))
    assert keys_of(streamed.train_dataloader()) == local
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one file per shard, no partial downloads left


def test_corrupt_samples_are_skipped_counted_and_logged(tmp_path: Path, small_clips: dict[str, bytes],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    good = [latent_sample(f"ok{i}", small_clips["wide"], 128, 64, seed=i) for i in range(4)]
    truncated = latent_sample("truncnpy", small_clips["wide"], 128, 64, seed=9)
    truncated["audio_latents.npy"] = truncated["audio_latents.npy"][:60]
    bad_json = latent_sample("badjson", small_clips["wide"], 128, 64, seed=10)
    bad_json["json"] = b"{not json"
    nan = latent_sample("nanvideo", small_clips["wide"], 128, 64, seed=11)
    video = np.ones((48, 3, 4, 8), dtype=np.float16)
    video[5, 1, 2, 3] = np.nan
    nan["video_latents.npy"] = npy(video)
    write_shard(tmp_path / "a.tar", [good[0], truncated, nan, good[1]])
    write_shard(tmp_path / "b.tar", [bad_json, good[2], good[3]])
    raw = [{"__key__": "garbage", "mp4": b"\0\0\0\x18ftypmp42 not really a video",
            "json": sample_json("garbage", 128, 64, 9)},
           {"__key__": "fine", "mp4": small_clips["wide"], "json": sample_json("fine", 128, 64, 9)}]
    write_shard(tmp_path / "raw.tar", raw)

    dm = latent_dm([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")], batch_size=1, epochs=1)
    with caplog.at_level(logging.WARNING, logger="ovi_pl.data.stream"):
        keys = [k for batch in dm.train_dataloader() for k in dm.on_after_batch_transfer(batch, 0)["keys"]]
    # 6 samples indexed (badjson is not), 6 batches: those of truncnpy and nanvideo, with nothing left
    # in them, are replaced by a repeat of the one before, so this rank steps as often as the others.
    assert len(keys) == 6 and sorted(set(keys)) == ["ok0", "ok1", "ok2", "ok3"]
    assert dm.skipped_samples == 3 and dm.state_dict()["skipped_samples"] == 3
    assert "'truncnpy' of shard" in caplog.text and str(tmp_path / "a.tar") in caplog.text
    assert "'nanvideo' of shard" in caplog.text and "video_latents.npy is not a finite float array" in caplog.text
    assert "'badjson' of shard" in caplog.text and str(tmp_path / "b.tar") in caplog.text

    raw_dm = ShardDataModule(str(tmp_path / "raw.tar"), mode="raw", batch_size=2, num_workers=0, num_frames=9,
                             target_area=64 * 128, epochs=1, return_keys=True)
    batches = list(raw_dm.train_dataloader())
    assert [b["keys"] for b in batches] == [["fine"]]
    assert int(batches[0]["skipped_samples"]) == 1


def test_unknown_shard_pattern_and_shards_without_usable_samples_fail_clearly(latent_shards: Path,
                                                                             tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="matches no files"):
        ShardDataModule(str(latent_shards / "nothing-*.tar"))
    write_shard(tmp_path / "audio_only.tar", [{"__key__": "a0", "flac": flac_bytes(1.0),
                                               "json": sample_json("a0", 0, 0, 24, kind="audio_only")}])
    dm = latent_dm(str(tmp_path / "audio_only.tar"))
    with pytest.raises(ValueError, match="audio_only.tar hold no samples usable in latent mode with modality audio_video"):
        dm.train_stream(rank=0, world_size=2)
