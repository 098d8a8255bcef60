"""CLIP text-video score: 100 x the mean cosine similarity between evenly spaced frames and the
prompt's visual text, computed by open-clip in the models environment (README "Environments").

Frames are decoded here (`ovi_pl.media.av_clip`) and handed over as .npy files; the other interpreter runs
`clip_worker.py`, so nothing of open-clip or torchvision is imported into this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ovi_pl.media.av_clip import read_video

WORKER = Path(__file__).with_name("clip_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_PYTHON_ENV = "OVI_PL_MODELS_PYTHON"


def find_models_python(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The models environment's interpreter: `explicit`, else $OVI_PL_MODELS_PYTHON, else
    <repo>/.venv-models/bin/python."""
    candidate = Path(explicit or os.environ.get(MODELS_PYTHON_ENV) or REPO_ROOT / ".venv-models/bin/python")
    if not candidate.is_file():
        raise FileNotFoundError(
            f"no models-environment interpreter at {candidate}: run `make models-env`, or point "
            f"{MODELS_PYTHON_ENV} (or clip.python) at a python with open-clip-torch installed"
        )
    return candidate


def sample_frames(path: str | os.PathLike[str], count: int) -> np.ndarray:
    """`count` frames evenly spaced over the clip's duration (at i * duration / count), uint8 [count, H, W, 3]."""
    return np.ascontiguousarray(read_video(path, count).transpose(1, 2, 3, 0))


class ClipScorer:
    """model: an open_clip model name (e.g. ViT-L-14), or the name in `model_config_json`;
    weights: its state dict (.pt / .safetensors), loaded with pretrained=None, never downloaded."""

    def __init__(
        self,
        model: str,
        weights: str | os.PathLike[str],
        model_config_json: str | os.PathLike[str] | None = None,
        num_frames: int = 8,
        python: str | os.PathLike[str] | None = None,
        timeout_s: float = 1800.0,
    ) -> None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"CLIP weights {weights} do not exist")
        self.model, self.weights, self.model_config_json = model, str(weights), model_config_json
        self.num_frames, self.timeout_s = num_frames, timeout_s
        self.python = find_models_python(python)

    def __call__(self, items: Sequence[tuple[Path, str]]) -> list[float]:
        """One score per (mp4, text) item."""
        with tempfile.TemporaryDirectory(prefix="clip_score_") as tmp:
            jobs = []
            for i, (path, text) in enumerate(items):
                frames = Path(tmp) / f"{i}.npy"
                np.save(frames, sample_frames(path, self.num_frames))
                jobs.append({"frames": str(frames), "text": text})
            job = {"model": self.model, "weights": self.weights, "items": jobs,
                   "model_config_json": str(self.model_config_json) if self.model_config_json else None}
            job_file = Path(tmp) / "job.json"
            job_file.write_text(json.dumps(job))
            # -I: the worker must see only the models environment, not this checkout or PYTHONPATH.
            result = subprocess.run([str(self.python), "-I", str(WORKER), str(job_file)], capture_output=True,
                                    text=True, timeout=self.timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"CLIP worker ({self.python}) failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])["scores"]
