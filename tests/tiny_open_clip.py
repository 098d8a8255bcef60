"""A tiny open_clip model in ViT-L/14's output layout, for tests that run the aesthetic stage in the models
environment (open_clip imports only there). A random ViT-L/14 is 1.7 GB and slow on CPU; this one keeps the
768-d embedding the LAION aesthetic head takes."""
from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_768 = "tiny-clip-768"


def write_tiny_clip_768(root: Path) -> Path:
    """Write `root/tiny-clip-768.json` (registered with open_clip here) and random weights, seed 0, to
    `root/clip.pt`; return the config's path."""
    import open_clip
    import torch

    config = root / f"{TINY_CLIP_768}.json"
    config.write_text(json.dumps({
        "embed_dim": 768,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    torch.save(open_clip.create_model(TINY_CLIP_768, pretrained=None).state_dict(), root / "clip.pt")
    return config
