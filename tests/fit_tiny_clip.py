"""Fit a tiny open_clip model to tell solid colours apart by their names; run by the models environment:

    python -I fit_tiny_clip.py MODEL_CONFIG.json OUT.safetensors '[[[r, g, b], "caption"], ...]'

The model is the one MODEL_CONFIG.json names (registered with open_clip, as clip_worker does), trained from a
fixed seed with a symmetric contrastive loss: each step shows every colour once, jittered by up to +-24 per
channel and fed through the model's own preprocessing, against all captions. Saved as a safetensors state
dict, the format ovi_pl/evaluation/clip_worker.py loads.
"""

import json
import sys
from pathlib import Path

STEPS = 25
JITTER = 24


def main(config_path: str, out_path: str, pairs_json: str) -> None:
    import numpy as np
    import open_clip
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from safetensors.torch import save_file

    pairs = json.loads(pairs_json)
    open_clip.add_model_config(config_path)
    name = Path(config_path).stem
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    tokens = open_clip.get_tokenizer(name)([caption for _, caption in pairs])
    colours = np.array([rgb for rgb, _ in pairs], np.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = torch.arange(len(pairs))
    model.train()
    for _ in range(STEPS):
        shades = np.clip(colours + rng.integers(-JITTER, JITTER + 1, colours.shape), 0, 255).astype(np.uint8)
        images = torch.stack([preprocess(Image.fromarray(np.full((48, 48, 3), shade, np.uint8))) for shade in shades])
        image = F.normalize(model.encode_image(images), dim=-1)
        text = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * image @ text.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_path)
    print(json.dumps({"final_loss": float(loss.detach())}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
