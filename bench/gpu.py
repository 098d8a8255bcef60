"""One GPU check of the model at its real width, in a few minutes on one H100 / H200.

    python bench/gpu.py            # CUDA; about 5-8 minutes
    python bench/gpu.py --smoke    # CPU at a tiny size: the same code paths, for the tests

Needs torch >= 2.11 and what `ovi_pl.models.ovi` imports (safetensors, pydantic, numpy; see
bench/RESULTS.md for carrying them as wheels); flash-attn is measured when importable. Prints one
table:
- attention: MFU of one full-width fused block pair (video + audio block, fusion attention both
  ways) forward + backward in bf16, at the token counts of a 704x704 121-frame clip (15004 video
  tokens, 157 audio latents) and a 960x960 10 s clip (54900 and 314), for each SDPA backend
  (flash, cuDNN, efficient) and flash-attn; peak memory of each;
- agreement: the same block pair's bf16 output against float32 (relative L2 error);
- fsdp2: a few training steps of ovi-11b cut to 2 block pairs at full width under FSDP2 (a world of
  one process), bf16 compute, activation checkpointing, AdamW.
MFU counts the analytic FLOPs of ovi_pl.training.flops against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovi_pl.models import attention as attention_module  # noqa: E402
from ovi_pl.models.ovi import OviFusionModel, get_model_config  # noqa: E402
from ovi_pl.models.ovi.config import FusionConfig  # noqa: E402
from ovi_pl.models.ovi.fusion import fused_block_pair  # noqa: E402
from ovi_pl.models.ovi.parallelize import parallelize  # noqa: E402
from ovi_pl.training.flops import training_flops  # noqa: E402
from ovi_pl.training.flow_matching import add_noise, to_model_time, velocity_target  # noqa: E402

# Dense bf16 tensor-core peak (no sparsity) by device name; others print TFLOP/s without MFU.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "B200": 2250.0, "A100": 312.0}
SDPA_BACKENDS = {
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
}


@dataclass(frozen=True)
class Clip:
    """A token count to measure: video latent grid (F, H, W) before patching, audio latents."""

    name: str
    video_grid: tuple[int, int, int]
    audio_latents: int


@dataclass(frozen=True)
class Setup:
    device: torch.device
    model: FusionConfig  # full width, one block pair
    fsdp_model: FusionConfig  # full width, a few block pairs
    clips: tuple[Clip, ...]
    text_tokens: int
    warmup: int
    iters: int
    fsdp_steps: int


def real_setup() -> Setup:
    return Setup(
        device=torch.device("cuda"),
        model=get_model_config("ovi-11b", num_layers=1),
        fsdp_model=get_model_config("ovi-11b", num_layers=2),
        clips=(Clip("704x704x121", (31, 44, 44), 157), Clip("960x960x241 (10 s)", (61, 60, 60), 314)),
        text_tokens=512,
        warmup=2,
        iters=5,
        fsdp_steps=4,
    )


def smoke_setup() -> Setup:
    tiny = get_model_config("ovi-tiny", num_layers=1)
    return Setup(
        device=torch.device("cpu"),
        model=tiny,
        fsdp_model=get_model_config("ovi-tiny", num_layers=2),
        clips=(Clip("tiny", (3, 4, 6), 13),),
        text_tokens=16,
        warmup=1,
        iters=1,
        fsdp_steps=2,
    )


# ---------------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def seconds_per_iter(fn: Callable[[], object], setup: Setup) -> float:
    for _ in range(setup.warmup):
        fn()
    synchronize(setup.device)
    start = time.perf_counter()
    for _ in range(setup.iters):
        fn()
    synchronize(setup.device)
    return (time.perf_counter() - start) / setup.iters


def inputs(cfg: FusionConfig, clip: Clip, text_tokens: int, device: torch.device, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    frames, height, width = clip.video_grid
    return {
        "video": torch.randn(1, cfg.video.in_channels, frames, height, width, generator=gen).to(device),
        "audio": torch.randn(1, clip.audio_latents, cfg.audio.in_channels, generator=gen).to(device),
        "t": torch.tensor([987.4], device=device),
        "context": torch.randn(1, text_tokens, cfg.video.text_dim, generator=gen).to(device),
    }


def block_pair_flops(cfg: FusionConfig, video_tokens: int, audio_tokens: int) -> float:
    """Forward + backward FLOPs of one fused block pair (cfg has one layer per tower)."""
    return training_flops(cfg.video, 1, video_tokens, audio_tokens) + training_flops(cfg.audio, 1, audio_tokens, video_tokens)


@contextlib.contextmanager
def kernel(name: str) -> Iterator[None]:
    """One attention kernel for the model: an SDPA backend, or flash-attn through ovi_pl's own path."""
    if name == "flash-attn":
        yield
        return
    # SDPA rows must not be routed to flash-attn when it is installed.
    with mock.patch.object(attention_module, "attention_backend", lambda: "sdpa"), sdpa_kernel(SDPA_BACKENDS[name]):
        yield


def kernels(device: torch.device) -> list[str]:
    names = list(SDPA_BACKENDS)
    if device.type == "cuda" and attention_module.attention_backend() != "sdpa":
        names.append("flash-attn")
    return names


# ---------------------------------------------------------------------------------- measurements


class BlockPair:
    """One full-width video + audio block pair with fixed embedded inputs, run the way fusion runs it."""

    def __init__(self, setup: Setup, clip: Clip, dtype: torch.dtype) -> None:
        torch.manual_seed(0)
        with torch.device(setup.device):
            self.model = OviFusionModel(setup.model).to(dtype)
        x = inputs(setup.model, clip, setup.text_tokens, setup.device)
        with torch.no_grad():
            self.video_state = self.model.video.embed(x["video"], x["t"], x["context"])
            self.audio_state = self.model.audio.embed(x["audio"], x["t"], x["context"])
        self.video_tokens = self.video_state.tokens.shape[1]
        self.audio_tokens = self.audio_state.tokens.shape[1]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fused_block_pair(
            self.model.video.blocks[0], self.model.audio.blocks[0],
            self.video_state.tokens, self.audio_state.tokens, self.video_state, self.audio_state,
        )

    def forward_backward(self) -> None:
        v, a = self.forward()
        (v.float().square().mean() + a.float().square().mean()).backward()


def attention_rows(setup: Setup) -> list[dict]:
    rows = []
    peak = peak_tflops(setup.device)
    for clip in setup.clips:
        pair = BlockPair(setup, clip, torch.bfloat16)
        flops = block_pair_flops(setup.model, pair.video_tokens, pair.audio_tokens)
        for name in kernels(setup.device):
            reset_peak(setup.device)
            row = {"section": "attention", "case": f"{clip.name}: {pair.video_tokens}+{pair.audio_tokens} tokens",
                   "kernel": name}
            try:
                with kernel(name):
                    seconds = seconds_per_iter(pair.forward_backward, setup)
            except RuntimeError as error:  # a backend that cannot run these inputs here
                rows.append(row | {"note": f"unsupported: {str(error).splitlines()[0][:60]}"})
                continue
            tflops = flops / seconds / 1e12
            rows.append(row | {"ms": 1e3 * seconds, "tflops": tflops, "mfu": None if peak is None else tflops / peak,
                               "peak_gib": peak_gib(setup.device)})
            pair.model.zero_grad(set_to_none=True)
        del pair
    return rows


def agreement_rows(setup: Setup) -> list[dict]:
    """bf16 output of the block pair against float32 with the same weights and inputs."""
    clip = setup.clips[0]
    outputs = {}
    for dtype in (torch.float32, torch.bfloat16):
        reset_peak(setup.device)
        pair = BlockPair(setup, clip, dtype)
        with torch.no_grad():
            outputs[dtype] = [o.float() for o in pair.forward()]
        del pair
    rows = []
    for i, modality in enumerate(("video", "audio")):
        reference, low = outputs[torch.float32][i], outputs[torch.bfloat16][i]
        error = ((low - reference).norm() / reference.norm()).item()
        rows.append({"section": "agreement", "case": f"{clip.name} {modality} bf16 vs fp32", "kernel": "default",
                     "note": f"relative L2 error {error:.2e}", "value": error})
    return rows


@contextlib.contextmanager
def world_of_one(device: torch.device) -> Iterator[None]:
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as store:
        dist.init_process_group(backend, init_method=f"file://{store}/pg", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def fsdp_rows(setup: Setup) -> list[dict]:
    """A few FSDP2 training steps of the cut-down ovi-11b: fp32 master weights, bf16 compute."""
    cfg, clip = setup.fsdp_model, setup.clips[0]
    reset_peak(setup.device)
    with world_of_one(setup.device):
        with torch.device("meta"):
            model = OviFusionModel(cfg)
        parallelize(model, init_device_mesh(setup.device.type, (1,)), param_dtype=torch.bfloat16)
        model.to_empty(device=setup.device)
        torch.manual_seed(0)
        model.init_weights()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        x = inputs(cfg, clip, setup.text_tokens, setup.device)
        losses, times = [], []
        for step in range(setup.fsdp_steps):
            synchronize(setup.device)
            start = time.perf_counter()
            s = torch.rand(1, generator=torch.Generator().manual_seed(step)).to(setup.device)
            noise_v, noise_a = torch.randn_like(x["video"]), torch.randn_like(x["audio"])
            v, a = model(add_noise(x["video"], noise_v, s), add_noise(x["audio"], noise_a, s), to_model_time(s),
                         x["context"], x["context"])
            loss = 0.85 * (v.float() - velocity_target(x["video"], noise_v)).square().mean() + \
                0.15 * (a.float() - velocity_target(x["audio"], noise_a)).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(setup.device)
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"FSDP2 training produced a non-finite loss: {losses}")
    steady = times[1:] or times
    return [{"section": "fsdp2", "case": f"{cfg.name} cut to {cfg.video.num_layers} block pairs, {clip.name}",
             "kernel": "default", "ms": 1e3 * sum(steady) / len(steady), "peak_gib": peak_gib(setup.device),
             "note": "loss " + " ".join(f"{v:.4f}" for v in losses), "value": losses}]


# ---------------------------------------------------------------------------------- report


def format_table(rows: list[dict]) -> str:
    columns = ("section", "case", "kernel", "ms", "tflops", "mfu", "peak_gib", "note")

    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        if key == "mfu":
            return f"{100 * value:.1f}%"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    lines += [" | ".join(cell(row, key) for key in columns) for row in rows]
    return "\n".join(lines)


def run(setup: Setup) -> list[dict]:
    return attention_rows(setup) + agreement_rows(setup) + fsdp_rows(setup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="run on CPU at a tiny size (for the tests)")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --smoke for the CPU check")
    setup = smoke_setup() if args.smoke else real_setup()
    device = torch.cuda.get_device_name() if setup.device.type == "cuda" else "cpu (smoke)"
    print(f"# bench/gpu.py on {device}, torch {torch.__version__}, attention default: "
          f"{attention_module.attention_backend()}, pid {os.getpid()}", flush=True)
    start = time.perf_counter()
    rows = run(setup)
    print(format_table(rows))
    print(f"# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
