"""Samples/s of ShardDataModule (latent and raw mode, batch 1 and batch 4) against a bare WebDataset
loop on the same shards.

    python bench/data_loading.py [--samples 48] [--workers 2] [--shards 8] [--repeats 3]

Shards hold 5.04 s clips (121 frames, H.264 + AAC), alternately 640x352 and 352x640, with their
latents at that size (video [48, 31, 22, 40] or [48, 31, 40, 22] fp16, audio [157, 20] fp32,
text [64, 4096] fp16), so batches of 4 come from two buckets. Latent mode is compared with a bare
loop that reads and decodes the same members; raw mode (decode, resize, crop; the encoders run
afterwards on the training device and are not timed here) with a bare loop that decodes the same
mp4 to the same frames with PyAV (its video only: raw mode also decodes the audio track and reads the
text embedding). The bare loops yield single samples; batch size changes nothing for them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ovi_pl.data import ShardDataModule  # noqa: E402

WIDE, TALL, FRAMES = (640, 352), (352, 640), 121
CAPTION = "A test pattern moves across the frame. <AUDCAP>A steady tone.<ENDAUDCAP>"


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def make_clip(path: Path, width: int, height: int) -> bytes:
    seconds = FRAMES / 24
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds + 0.1:.3f}",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", "-ac", "1", "-ar", "16000", str(path)],
        check=True,
    )
    return path.read_bytes()


def sample(key: str, mp4: bytes, width: int, height: int, rng: np.random.Generator) -> dict[str, bytes | str]:
    arrays = {
        "video_latents.npy": rng.standard_normal((48, (FRAMES - 1) // 4 + 1, height // 16, width // 16)).astype(np.float16),
        "audio_latents.npy": rng.standard_normal((157, 20)).astype(np.float32),
        "text_embedding.npy": rng.standard_normal((64, 4096)).astype(np.float16),
    }
    meta = {
        "schema_version": "1.0", "key": key, "kind": "audio_video", "caption": CAPTION,
        "media": {"duration_s": round(FRAMES / 24, 6), "audio": {"sample_rate": 16000, "channels": 1},
                  "video": {"fps": 24, "num_frames": FRAMES, "width": width, "height": height}},
        "source": {"uri": f"bench://{key}", "start_s": 0.0, "end_s": FRAMES / 24},
        "latents": [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()],
    }
    return {"__key__": key, "mp4": mp4, "json": json.dumps(meta).encode(), **{n: npy(a) for n, a in arrays.items()}}


def write_shards(root: Path, samples: int, shards: int) -> list[str]:
    clips = [(make_clip(root / f"clip{w}x{h}.mp4", w, h), w, h) for w, h in (WIDE, TALL)]
    rng = np.random.default_rng(0)
    paths = []
    for s in range(shards):
        path = root / f"train-{s:04d}.tar"
        with wds.TarWriter(str(path), encoder=False) as sink:
            for i in range(s, samples, shards):
                sink.write(sample(f"clip{i:05d}", *clips[i // shards % 2], rng))
        paths.append(str(path))
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(loader, count_fn) -> tuple[int, float, float]:
    """(samples after the first batch, their samples/s of wall time, samples per CPU second of every
    process over the whole loop). The CPU figure holds on a machine shared with other jobs."""
    cpu = cpu_seconds()
    iterator = iter(loader)
    first = count_fn(next(iterator))  # worker start-up is not throughput
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += count_fn(batch)
    wall = time.perf_counter() - start
    del iterator  # exhausted: its workers have exited and been joined
    return count, count / wall, (first + count) / (cpu_seconds() - cpu)


def bare_latent_loop(urls: list[str], workers: int) -> DataLoader:
    dataset = wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker).decode().to_tuple(
        "video_latents.npy", "audio_latents.npy", "text_embedding.npy", "json"
    )
    return DataLoader(dataset, batch_size=None, num_workers=workers)


def decode_mp4(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


def bare_raw_loop(urls: list[str], workers: int) -> DataLoader:
    dataset = wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker).map(
        lambda s: decode_mp4(s["mp4"])
    )
    return DataLoader(dataset, batch_size=None, num_workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over every loop; rates are their median, ratios the median of each round's")
    args = parser.parse_args()
    print("load average at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        urls = write_shards(Path(tmp), args.samples, args.shards)
        loops = {"bare latent": (lambda: bare_latent_loop(urls, args.workers), lambda b: 1),
                 "bare raw": (lambda: bare_raw_loop(urls, args.workers), lambda b: 1)}
        startup: dict[str, float] = {}
        for mode in ("latent", "raw"):
            for batch_size in (1, 4):
                loops[f"{mode}, batch {batch_size}"] = (
                    lambda m=mode, b=batch_size: ours(urls, m, b, args.workers, startup), lambda b: len(b["keys"]))
        # Rounds interleave the loops, so a busy spell on a shared machine hits them alike, and a ratio is
        # taken within each round: bare and ours ran seconds apart.
        rounds = [{name: timed(make(), count) for name, (make, count) in loops.items()} for _ in range(args.repeats)]
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'loop':<16} {'samples':>8} {'samples/s':>10} {'/ bare [min-max]':>18} {'per CPU s':>10} "
          f"{'/ bare [min-max]':>18}")
    for name in loops:
        bare = "bare " + name.split(",")[0].removeprefix("bare ")
        cells = []
        for i in (1, 2):  # samples/s of wall time, samples per CPU second
            ratios = [r[name][i] / r[bare][i] for r in rounds]
            cells.append(f"{statistics.median(r[name][i] for r in rounds):>10.2f} {statistics.median(ratios):>7.2f} "
                         f"[{min(ratios):.2f}-{max(ratios):.2f}]")
        print(f"{name:<16} {rounds[0][name][0]:>8} {cells[0]} {cells[1]}")
    print("start-up before the first batch: " + ", ".join(f"{m} {t:.2f} s" for m, t in startup.items()))


def ours(urls: list[str], mode: str, batch_size: int, workers: int, startup: dict[str, float]) -> DataLoader:
    module = ShardDataModule(train_urls=urls, mode=mode, batch_size=batch_size, num_workers=workers, epochs=1,
                             text_len=512, target_area=WIDE[0] * WIDE[1])
    start = time.perf_counter()
    stream = module.train_stream(0, 1)  # reads every shard's tar headers and json (the index)
    startup[mode] = time.perf_counter() - start
    return DataLoader(stream, batch_size=None, num_workers=workers)


if __name__ == "__main__":
    main()
