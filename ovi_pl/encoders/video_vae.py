"""Video <-> latents for the video tower: the Wan2.2 VAE through diffusers' `AutoencoderKLWan`.

The Wan2.2 (TI2V-5B) VAE patchifies RGB 2x2 into 12 channels, then compresses 8x spatially and
4x in time (the first frame on its own): [B, 3, 1 + 4k, H, W] -> [B, 48, 1 + k, H / 16, W / 16],
e.g. 121 x 704 x 1280 -> 31 x 44 x 80. Latents are the posterior mean normalised per channel with
the config's `latents_mean` / `latents_std`, (z - mean) / std, as Ovi and Wan2.2 do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from safetensors import safe_open
from torch import Tensor

from ._loading import CheckpointMismatchError

# The diffusers config of Wan-AI/Wan2.2-TI2V-5B-Diffusers/vae (latent statistics left to the file).
WAN22_VAE_ARCH: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "is_residual": True,
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 16,
}


def _check_weights_file(path: Path) -> None:
    """Compare the weights file with the config before diffusers loads it, so a wrong or partial
    file fails naming the file and the keys instead of deep inside from_pretrained."""
    config = json.loads((path / "config.json").read_text())
    files = sorted(path.glob("diffusion_pytorch_model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path} holds no diffusion_pytorch_model*.safetensors")
    found: set[str] = set()
    for file in files:
        with safe_open(file, framework="pt") as f:
            found.update(f.keys())
    with torch.device("meta"):
        expected = set(AutoencoderKLWan.from_config(config).state_dict())
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        names = ", ".join(f.name for f in files)
        lines = [f"{path}/{names} does not match its config.json:"]
        if missing:
            lines.append(f"  {len(missing)} missing keys: {', '.join(missing[:20])}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys: {', '.join(unexpected[:20])}")
        raise CheckpointMismatchError("\n".join(lines))


class VideoVAE:
    """Frozen Wan VAE with the latent normalisation the towers train on."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        cfg = vae.config
        if cfg.patch_size is None or len(cfg.latents_mean) != cfg.z_dim or len(cfg.latents_std) != cfg.z_dim:
            raise ValueError("expected a Wan2.2-style VAE: patch_size set and z_dim latent statistics")
        self.vae = vae.eval().requires_grad_(False)
        self.temporal_ratio = int(cfg.scale_factor_temporal)
        self.spatial_ratio = int(cfg.scale_factor_spatial)
        self.latent_channels = int(cfg.z_dim)
        stats = dict(device=vae.device, dtype=torch.float32)
        self.latents_mean = torch.tensor(cfg.latents_mean, **stats).view(1, -1, 1, 1, 1)
        self.latents_std = torch.tensor(cfg.latents_std, **stats).view(1, -1, 1, 1, 1)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> VideoVAE:
        """Load a local diffusers directory (config.json + diffusion_pytorch_model.safetensors),
        e.g. Wan2.2-TI2V-5B-Diffusers/vae. Never downloads."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a diffusers model directory (no config.json)")
        _check_weights_file(path)
        vae = AutoencoderKLWan.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
        return cls(vae.to(device))

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        self._check_geometry(frames, height, width)
        t, s = self.temporal_ratio, self.spatial_ratio
        return (self.latent_channels, 1 + (frames - 1) // t, height // s, width // s)

    def _check_geometry(self, frames: int, height: int, width: int) -> None:
        t, s = self.temporal_ratio, self.spatial_ratio
        # diffusers silently drops trailing frames that do not fill a chunk of t.
        if (frames - 1) % t:
            raise ValueError(f"frame count must be 1 + {t}k, got {frames}")
        if height % s or width % s:
            raise ValueError(f"height and width must be multiples of {s}, got {height}x{width}")

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """frames [B, 3, F, H, W], uint8 in [0, 255] or float in [-1, 1] -> normalised latents
        [B, 48, 1 + (F - 1) / 4, H / 16, W / 16], float32 (posterior mean)."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B, 3, F, H, W], got {tuple(frames.shape)}")
        self._check_geometry(*frames.shape[2:])
        x = frames.float() / 127.5 - 1.0 if frames.dtype == torch.uint8 else frames
        x = x.to(device=self.vae.device, dtype=self.vae.dtype)
        mean = self.vae.encode(x).latent_dist.mode().float()
        return (mean - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, 48, f, h, w] -> frames [B, 3, 1 + 4 (f - 1), 16 h, 16 w] in [-1, 1], float32."""
        z = latents.float().to(self.vae.device) * self.latents_std + self.latents_mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.float()

    @staticmethod
    def to_uint8(frames: Tensor) -> Tensor:
        """[-1, 1] float frames -> uint8 [0, 255]."""
        return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
