"""CLIP text-video score: 100 x the mean cosine similarity between evenly spaced frames and the
prompt's visual text, computed by open-clip in the models environment (README "Environments").

The environment is named and reached as curation's model stages reach theirs (ovi_pl/envs.py): its lock is
checked when the scorer is made, then a Ray actor (`clip_worker.ClipModel`) starts there with its runtime_env
on the cluster RAY_ADDRESS names or an in-process one. Frames are decoded here (`ovi_pl.media.av_clip`) and
sent as numpy arrays, so nothing of open-clip or torchvision is imported into this process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ovi_pl.envs import DEFAULT_ENVS, lock_problems, resolved, runtime_env
from ovi_pl.evaluation.clip_worker import ClipModel
from ovi_pl.media.av_clip import read_video
from ovi_pl.ray_cluster import join_or_start_ray

# Clips whose frames may wait in Ray's object store for the actor at once: decoding runs ahead of scoring
# by this much, and a folder of long full-size clips never sits in memory whole.
IN_FLIGHT = 4


def sample_frames(path: str | os.PathLike[str], count: int) -> np.ndarray:
    """`count` frames evenly spaced over the clip's duration (at i * duration / count), uint8 [count, H, W, 3]."""
    return np.ascontiguousarray(read_video(path, count).transpose(1, 2, 3, 0))


class ClipScorer:
    """model: an open_clip model name (e.g. ViT-L-14), or the name in `model_config_json`;
    weights: its state dict (.pt / .safetensors), loaded with pretrained=None, never downloaded;
    environment: where open-clip runs, an ovi_pl.envs spec (relative paths against the repository root),
    named `environment_key` in errors."""

    def __init__(
        self,
        model: str,
        weights: str | os.PathLike[str],
        model_config_json: str | os.PathLike[str] | None = None,
        num_frames: int = 8,
        environment: Mapping[str, Any] = DEFAULT_ENVS["models"],
        environment_key: str = "envs.models",
    ) -> None:
        for what, path in (("weights", weights), ("model_config_json", model_config_json)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"CLIP {what} {path} does not exist")
        spec = resolved(environment)
        problems = lock_problems(environment_key, spec, "needed by the CLIP score; build it with `make models-env` "
                                 "(requirements/curation-models.txt, locked to the main environment) or point "
                                 f"{environment_key} at a locked environment with open-clip-torch")
        if problems:
            raise ValueError("the CLIP score's environment cannot run: " + "\n  ".join(problems))
        self.settings = (model, str(Path(weights).resolve()),
                         str(Path(model_config_json).resolve()) if model_config_json else None)
        self.num_frames = num_frames
        self.runtime_env = runtime_env(spec)

    def __call__(self, items: Sequence[tuple[Path, str]]) -> list[float]:
        """One score per (mp4, text) item."""
        import ray

        join_or_start_ray()
        actor = ray.remote(ClipModel).options(num_cpus=1, runtime_env=self.runtime_env).remote(*self.settings)
        try:
            scores = []
            for i, (path, text) in enumerate(items):
                if i >= IN_FLIGHT:
                    ray.wait([scores[i - IN_FLIGHT]])
                scores.append(actor.score.remote(sample_frames(path, self.num_frames), text))
            return ray.get(scores)
        finally:
            ray.kill(actor)
