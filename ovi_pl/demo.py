"""`python -m ovi_pl demo`: the end-to-end path on a CPU, at the size of the `ovi-tiny` config.

Today it builds the tiny twin-tower model, runs one fused forward pass on random latents, writes
the weights in Ovi's checkpoint format and reloads them. Curation, training, MLflow and sample
generation join this path as they land (issues 3 to 8).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ovi_pl.models.ovi import OviFusionModel, get_model_config, load_ovi_checkpoint, save_ovi_checkpoint


def run_demo(run_dir: Path = Path("runs/demo")) -> Path:
    cfg = get_model_config("ovi-tiny")
    torch.manual_seed(0)
    model = OviFusionModel(cfg).eval()
    # 121 frames at 24 fps -> 31 latent frames and 157 audio latents; the tiny demo uses 1/4 of that.
    video = torch.randn(1, cfg.video.in_channels, 8, 8, 8)
    audio = torch.randn(1, 40, cfg.audio.in_channels)
    text = torch.randn(1, cfg.video.text_len, cfg.video.text_dim)
    with torch.no_grad():
        v, a = model(video, audio, torch.tensor([500.0]), text, text)
    print(f"fused forward: video velocity {tuple(v.shape)}, audio velocity {tuple(a.shape)}")

    path = save_ovi_checkpoint(model, run_dir / "ovi-tiny.safetensors")
    reloaded = OviFusionModel(cfg).eval()
    load_ovi_checkpoint(reloaded, path)
    with torch.no_grad():
        same = all(torch.equal(x, y) for x, y in zip(reloaded(video, audio, torch.tensor([500.0]), text, text), (v, a)))
    print(f"wrote {path} in Ovi's key format; reloaded model gives identical outputs: {same}")
    if not same:
        raise SystemExit("checkpoint round trip changed the outputs")
    return path
