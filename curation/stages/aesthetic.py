"""Aesthetic filter: LAION improved-aesthetic-predictor MLP on CLIP ViT-L/14 image embeddings.

A model stage: an actor pool keeps CLIP loaded between batches. open-clip needs torchvision,
which does not import beside the main environment's torch 2.13 CPU wheel, so by default the
actors run on `.venv-models`' interpreter (README "Environments"). Weights come from local
files only (`filters.aesthetic.clip_weights`, `head_weights`); nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ovi_pl.media.frames import frame_source, sample_frames  # ffmpeg and numpy only: imports in .venv-models too

from ..config import AestheticFilter
from ..stage import Resources, Row, Stage

EMBED_DIM = 768  # ViT-L/14 image embedding


def build_head(input_size: int = EMBED_DIM) -> Any:
    """The MLP of LAION's improved-aesthetic-predictor, with its state dict names (layers.0 ... layers.7)."""
    from torch import nn

    class AestheticHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(input_size, 1024), nn.Dropout(0.2),
                nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, embeddings: Any) -> Any:
            # The head was trained on L2-normalised CLIP embeddings; raw ones give meaningless scores.
            embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return self.layers(embeddings).squeeze(-1)

    return AestheticHead()


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """A state dict from .safetensors or a torch file (weights only: no pickled code runs)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_head(path: str | Path) -> Any:
    head = build_head()
    head.load_state_dict(load_state_dict(path))
    return head.eval()


class AestheticFilterStage(Stage):
    name: ClassVar[str] = "aesthetic"

    def __init__(self, config: AestheticFilter):
        self.config = config
        self.batch_size = config.batch_size  # type: ignore[misc]  # per-config, not per-class
        self.resources = Resources(cpus=1.0, gpus=config.gpus_per_actor, actors=config.actors,  # type: ignore[misc]
                                   environment=config.environment)

    def setup(self) -> None:
        import open_clip  # only importable in .venv-models (see module docstring)
        import torch

        self.device = "cuda" if self.config.gpus_per_actor and torch.cuda.is_available() else "cpu"
        if self.config.clip_model_config is not None:  # a model open_clip does not ship, e.g. a test's tiny one
            open_clip.add_model_config(self.config.clip_model_config)
        model, _, preprocess = open_clip.create_model_and_transforms(self.config.clip_model, pretrained=None)
        model.load_state_dict(load_state_dict(self.config.clip_weights))
        self.model = model.eval().to(self.device)
        self.preprocess = preprocess
        self.head = load_head(self.config.head_weights).to(self.device)

    def score(self, frames: list[Any]) -> float:
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.device)
        with torch.no_grad():
            embeddings = self.model.encode_image(batch).float()
            return float(self.head(embeddings).mean())

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            source, _ = frame_source(row["mp4_path"], row.get("frames_path"), width=self.config.frame_width,
                                     num_frames=row.get("video", {}).get("num_frames"))
            frames = sample_frames(source, self.config.num_frames, width=self.config.frame_width, pix_fmt="rgb24")
            score = round(self.score(frames), 4)
            if score < self.config.min_score:
                out.append(self.reject(row, "low_aesthetic", f"aesthetic {score:.2f} < filters.aesthetic.min_score "
                                       f"{self.config.min_score}", aesthetic=score))
            else:
                out.append(self.with_scores(row, aesthetic=score))
        return out
