"""CLIP text-frame similarity, run by the models environment's interpreter (open-clip lives there).

Standalone on purpose: it imports neither ovi_pl nor anything of the main environment, and is
started as `python -I clip_worker.py job.json`. The job names the model (an open_clip name, and
optionally a model config json to register first), the weights file, and items of (frames .npy
[N, H, W, 3] uint8, text). It prints one json line: {"scores": [...]} (100 x mean cosine).
"""

import json
import sys


def main(job_path: str) -> None:
    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    job = json.loads(open(job_path).read())
    if job.get("model_config_json"):
        open_clip.add_model_config(job["model_config_json"])
    model, _, preprocess = open_clip.create_model_and_transforms(job["model"], pretrained=None)
    if job["weights"].endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(job["weights"])
    else:
        state = torch.load(job["weights"], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    tokenizer = open_clip.get_tokenizer(job["model"])
    scores = []
    with torch.no_grad():
        for item in job["items"]:
            frames = np.load(item["frames"])
            images = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
            image_emb = model.encode_image(images).float()
            text_emb = model.encode_text(tokenizer([item["text"]])).float()
            image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
            text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
            scores.append(float(100.0 * (image_emb @ text_emb.T).mean()))
    print(json.dumps({"scores": scores}))


if __name__ == "__main__":
    main(sys.argv[1])
