"""The open-clip side of evaluation's CLIP score, run in the models environment (open-clip and torchvision do
not import beside the main environment's torch).

`ClipModel` is the Ray actor `ovi_pl.evaluation.clip_score.ClipScorer` starts with that environment's
runtime_env (ovi_pl/envs.py, as curation's model stages are): it is built in the worker from plain settings
(model name, weights path, model config json) and scores frames the driver decoded, sent as numpy arrays.
Nothing beyond numpy is imported at module level, so the main environment imports this module too.
"""

from __future__ import annotations

import numpy as np


class ClipModel:
    """model: an open_clip model name (e.g. ViT-L-14), or the name in `model_config_json`, which is registered
    first; weights: its state dict (.safetensors, or a torch file read with weights_only), never downloaded."""

    def __init__(self, model: str, weights: str, model_config_json: str | None = None) -> None:
        import open_clip
        import torch

        if model_config_json:
            open_clip.add_model_config(model_config_json)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=None)
        if weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)

    def score(self, frames: np.ndarray, text: str) -> float:
        """100 x the mean cosine similarity between `frames` (uint8 [N, H, W, 3] RGB) and `text`."""
        import torch
        from PIL import Image

        with torch.no_grad():
            images = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames])
            image_emb = self.model.encode_image(images).float()
            text_emb = self.model.encode_text(self.tokenizer([text])).float()
        image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
        text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
        return float(100.0 * (image_emb @ text_emb.T).mean())
