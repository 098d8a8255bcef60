from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ovi_pl.models.ovi import OviFusionModel, get_model_config


@pytest.fixture(autouse=True)
def _no_process_group_left_behind():
    """An in-process Trainer.fit leaves its default process group initialised (Lightning does not destroy
    it); the next test that starts its own group would then fail with "initialize ... twice"."""
    yield
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter non-trivial values; the reference init zeroes the heads, which would
    hide most of the network from outputs and gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif "norm" in name:
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)
    return model


@pytest.fixture
def tiny_model() -> OviFusionModel:
    torch.manual_seed(0)
    return randomize_(OviFusionModel(get_model_config("ovi-tiny"))).eval()


@pytest.fixture
def make_inputs():
    return tiny_inputs


def tiny_inputs(batch: int = 2, seed: int = 0, audio_len: int = 13, frames: int = 3) -> dict[str, torch.Tensor]:
    """Latents and text embeddings at the ovi-tiny geometry."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(batch, 48, frames, 4, 6, generator=gen),
        "audio": torch.randn(batch, audio_len, 20, generator=gen),
        "t": torch.rand(batch, generator=gen) * 1000,
        "video_context": torch.randn(batch, 10, 32, generator=gen),
        "audio_context": torch.randn(batch, 10, 32, generator=gen),
    }


ROOT = Path(__file__).resolve().parents[1]

# Real sample media shipped in the repository (examples/media/README.md: source and licence). The
# clips are named, not globbed: a test that reads "the sample clips" reads all three, and a missing
# one fails the session (pytest_sessionstart below) instead of shrinking a parametrization.
SAMPLE_MEDIA = ROOT / "examples" / "media"
SAMPLE_CLIP_NAMES = ("kitchen_two_women_704x1280.mp4", "stage_three_men_704x1280.mp4", "two_men_closeup_704x1280.mp4")
SAMPLE_CLIPS = tuple(SAMPLE_MEDIA / name for name in SAMPLE_CLIP_NAMES)
SAMPLE_PROMPTS_CSV = SAMPLE_MEDIA / "ovi_example_prompts_t2v.csv"


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [str(p.relative_to(ROOT)) for p in (*SAMPLE_CLIPS, SAMPLE_PROMPTS_CSV) if not p.is_file()]
    if missing:
        raise pytest.UsageError(f"shipped sample media is missing: {missing}; it is part of the repository "
                                "(restore it from git), and tests that read it must not run without it")


# `make test` runs two pytest-xdist workers (`-n 2`). The files below never start Ray or a browser: each
# goes whole to whichever worker is free (its module fixtures built once). Every other file starts Ray
# clusters (in-process, with `ray start` on Ray's default ports as README says, or through the demo) or
# Chromium, and they form one unit of work: one worker runs them one after another, as a plain `pytest`
# would. A new file joins that unit until it is listed here.
BESIDE_RAY = {
    "test_attention", "test_bench_gpu", "test_captions", "test_checkpoint_retention", "test_checkpoints", "test_cli",
    "test_config_checks", "test_context_parallel", "test_data_specs", "test_datamodule", "test_directional",
    "test_encoders", "test_flow_matching", "test_fresh_towers", "test_fusion_model", "test_generation",
    "test_imports", "test_lineage", "test_lora", "test_media", "test_memory_options", "test_model_configs",
    "test_parallelize", "test_reference_parity", "test_rope", "test_sync", "test_timestep_fidelity", "test_training",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    # xdist's own `--dist loadgroup` marks do not group under pytest 9 (it renames `item._nodeid`, which
    # pytest 9 no longer reads), so the units are made here, from the test's file.
    from xdist.scheduler import LoadScopeScheduling

    class RayFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if Path(file).stem in BESIDE_RAY else "ray-and-browser"

    return RayFilesTogether(config, log)


DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


def run_ovi_pl(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m ovi_pl <args>` in `workdir`, as a user runs it."""
    # An in-process Trainer elsewhere in the session leaves MASTER_PORT set; each run picks its own.
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "ovi_pl", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def ovi_pl_in_process(*args: str) -> int:
    """`python -m ovi_pl <args>` in this process, for commands that stop before any work (its imports are
    paid once per session, not once per command); the exit code."""
    from ovi_pl.cli import main

    try:
        with patch.object(sys, "argv", ["python -m ovi_pl", *args]):
            return main(list(args))
    except SystemExit as stop:  # LightningCLI exits after --print_config and on a bad config
        return stop.code if isinstance(stop.code, int) else 1


def models_python() -> Path | None:
    """The second environment's interpreter (README "Environments"), where the project's default `envs`
    puts it (.venv-models), or None where it is not installed."""
    from ovi_pl.envs import DEFAULT_ENVS, resolved

    python = Path(resolved(DEFAULT_ENVS["models"])["python"])
    return python if python.is_file() else None


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    """`python -m ovi_pl demo` once per session in a fresh directory: (that directory, its stdout)."""
    workdir = tmp_path_factory.mktemp("demo")
    result = run_ovi_pl(workdir, "demo", timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return workdir, result.stdout


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> Path:
    """The tiny CLAP of tests/fit_tiny_clap.py, fitted once per session (about 15 s) for every test that scores
    audio against text."""
    from fit_tiny_clap import fit_tiny_clap

    return fit_tiny_clap(tmp_path_factory.mktemp("clap"))
