"""Samples/s of ShardDataModule (latent and raw mode) against a bare WebDataset loop on the same shards.

    python bench/data_loading.py [--samples 64] [--workers 2] [--shards 8]

Shards hold 5.04 s clips at 352x640 (121 frames, H.264 + AAC) with their latents at that size
(video [48, 31, 22, 40] fp16, audio [157, 20] fp32, text [64, 4096] fp16). Latent mode is
compared with a bare loop that reads and decodes the same members; raw mode (decode, resize,
crop; the encoders run afterwards on the training device and are not timed here) with a bare
loop that decodes the same mp4 with PyAV.
"""

from __future__ import annotations

import argparse
import io
import json
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

WIDTH, HEIGHT, FRAMES = 640, 352, 121
CAPTION = "A test pattern moves across the frame. <AUDCAP>A steady tone.<ENDAUDCAP>"


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def make_clip(path: Path) -> bytes:
    seconds = FRAMES / 24
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=24:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds + 0.1:.3f}",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", "-ac", "1", "-ar", "16000", str(path)],
        check=True,
    )
    return path.read_bytes()


def sample(key: str, mp4: bytes, rng: np.random.Generator) -> dict[str, bytes | str]:
    arrays = {
        "video_latents.npy": rng.standard_normal((48, (FRAMES - 1) // 4 + 1, HEIGHT // 16, WIDTH // 16)).astype(np.float16),
        "audio_latents.npy": rng.standard_normal((157, 20)).astype(np.float32),
        "text_embedding.npy": rng.standard_normal((64, 4096)).astype(np.float16),
    }
    meta = {
        "schema_version": "1.0", "key": key, "kind": "audio_video", "caption": CAPTION,
        "media": {"duration_s": round(FRAMES / 24, 6), "audio": {"sample_rate": 16000, "channels": 1},
                  "video": {"fps": 24, "num_frames": FRAMES, "width": WIDTH, "height": HEIGHT}},
        "source": {"uri": f"bench://{key}", "start_s": 0.0, "end_s": FRAMES / 24},
        "latents": [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()],
    }
    return {"__key__": key, "mp4": mp4, "json": json.dumps(meta).encode(), **{n: npy(a) for n, a in arrays.items()}}


def write_shards(root: Path, samples: int, shards: int) -> list[str]:
    mp4 = make_clip(root / "clip.mp4")
    rng = np.random.default_rng(0)
    paths = []
    for s in range(shards):
        path = root / f"train-{s:04d}.tar"
        with wds.TarWriter(str(path), encoder=False) as sink:
            for i in range(s, samples, shards):
                sink.write(sample(f"clip{i:05d}", mp4, rng))
        paths.append(str(path))
    return paths


def timed(loader, count_fn) -> tuple[int, float]:
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += count_fn(batch)
    return count, count / (time.perf_counter() - start)


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
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = write_shards(Path(tmp), args.samples, args.shards)
        results = {}
        for mode in ("latent", "raw"):
            module = ShardDataModule(train_urls=urls, mode=mode, batch_size=1, num_workers=args.workers, epochs=1,
                                     shuffle_buffer=16, text_len=512, target_area=WIDTH * HEIGHT)
            loader = DataLoader(module.train_stream(0, 1), batch_size=None, num_workers=args.workers)
            results[mode] = timed(loader, lambda b: len(b["keys"]))
        results["bare latent"] = timed(bare_latent_loop(urls, args.workers), lambda b: 1)
        results["bare raw"] = timed(bare_raw_loop(urls, args.workers), lambda b: 1)
    print(f"{'loop':<14} {'samples':>8} {'samples/s':>10}")
    for name, (count, per_s) in results.items():
        print(f"{name:<14} {count:>8} {per_s:>10.2f}")
    print(f"latent mode / bare loop: {results['latent'][1] / results['bare latent'][1]:.2f}")
    print(f"raw mode / bare decode:  {results['raw'][1] / results['bare raw'][1]:.2f}")


if __name__ == "__main__":
    main()
