"""Tiny encoders with random weights, written in the released file formats.

The demo and the tests cannot download Wan2.2's VAE, MMAudio or umT5-xxl, so they build the same
classes at small widths and save them exactly as the real checkpoints are laid out: a diffusers
directory for the video VAE, `v1-16.pth` and `best_netG.pt` for MMAudio, a transformers directory
(model + tokenizer) for the text encoder. Everything downstream loads them through the real
loaders. The compression ratios (16x16 spatial, 4x temporal, 512 audio samples per latent, 48
and 20 latent channels) are the real ones, so every shape a tiny run sees is a real shape.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
import yaml

from ovi_pl.data.encoding import EncoderPaths
from ovi_pl.encoders.audio_vae import AudioVAEConfig
from ovi_pl.encoders.bigvgan import BigVGANVocoder
from ovi_pl.encoders.mmaudio_vae import MMAudioVAE
from ovi_pl.encoders.video_vae import WAN22_VAE_ARCH


# The tiny audio widths, in the yaml that `AudioVAEConfig.from_yaml` and the configs'
# `audio_vae_config` take. The vocoder keeps the real upsampling (hop 256), so audio durations
# are the real ones.
TINY_AUDIO_YAML = """vae: {hidden_dim: 8}
vocoder: {upsample_initial_channel: 64, resblock_kernel_sizes: [3, 7], resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]}
"""
TINY_AUDIO = AudioVAEConfig.from_mapping(yaml.safe_load(TINY_AUDIO_YAML))

# Whole words get one token each; anything else falls back to characters.
_WORDS = ("a the man woman women two says speaks hello kitchen stage lights crowd singer voice male female "
          "speaking speech music sound and in of with on at").split()


def write_tiny_video_vae(path: str | Path, seed: int = 0) -> Path:
    """A Wan2.2-structured VAE (residual blocks, 2x2 patchify, 48 latent channels) at base width 8."""
    from diffusers import AutoencoderKLWan

    gen = torch.Generator().manual_seed(seed)
    config = dict(
        WAN22_VAE_ARCH,
        base_dim=8,
        decoder_base_dim=8,
        latents_mean=(0.1 * torch.randn(48, generator=gen)).tolist(),
        latents_std=(0.5 + torch.rand(48, generator=gen)).tolist(),
    )
    torch.manual_seed(seed)
    AutoencoderKLWan(**config).save_pretrained(path)
    return Path(path)


def random_tiny_audio_modules(seed: int = 0) -> tuple[MMAudioVAE, BigVGANVocoder]:
    """The MMAudio VAE and BigVGAN vocoder of TINY_AUDIO, with statistics and gains in the ranges
    of the released weights (so decoded audio is not silent or clipped)."""
    torch.manual_seed(seed)
    vae, vocoder = MMAudioVAE(TINY_AUDIO.vae), BigVGANVocoder(TINY_AUDIO.vocoder)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        vae.data_mean.copy_(-2 + 0.5 * torch.randn(vae.data_mean.shape, generator=gen))
        vae.data_std.copy_(0.9 + 0.1 * torch.rand(vae.data_std.shape, generator=gen))
        vae.encoder.learnable_gain.fill_(0.1)
        for name, p in vocoder.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("original0"):  # weight-norm magnitudes: keep the output out of tanh saturation
                p.mul_(0).add_(0.4)
    return vae, vocoder


def write_tiny_audio_checkpoints(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """`v1-16.pth` (a bare state dict) and `best_netG.pt` ({'generator': state dict}), as released,
    and `config.yaml` (TINY_AUDIO_YAML), since their widths are not the released ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae, vocoder = random_tiny_audio_modules(seed)
    torch.save(vae.state_dict(), folder / "v1-16.pth")
    torch.save({"generator": vocoder.state_dict()}, folder / "best_netG.pt")
    (folder / "config.yaml").write_text(TINY_AUDIO_YAML)
    return folder / "v1-16.pth", folder / "best_netG.pt"


def write_tiny_text_encoder(path: str | Path, d_model: int = 32, num_layers: int = 1, seed: int = 0) -> Path:
    """A umT5 encoder `d_model` wide and a unigram T5 tokenizer, saved with save_pretrained."""
    from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -float(i + 1)) for i, w in enumerate(_WORDS)]
    vocab += [(c, -20.0) for c in string.ascii_lowercase + string.digits + ".,':;!?<>/&-"]
    T5TokenizerFast(vocab=vocab, extra_ids=0).save_pretrained(path)
    config = UMT5Config(vocab_size=len(vocab), d_model=d_model, d_kv=4, d_ff=32, num_layers=num_layers, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16)
    torch.manual_seed(seed)
    UMT5EncoderModel(config).save_pretrained(path)
    return Path(path)


def write_tiny_encoders(folder: str | Path, text_dim: int = 32, text_len: int = 16) -> tuple[EncoderPaths, Path]:
    """All three under `folder`; returns their EncoderPaths (text_dim and text_len of the model
    they feed, ovi-tiny's by default) and the vocoder's path (generation decodes audio with it)."""
    folder = Path(folder)
    video = write_tiny_video_vae(folder / "wan_vae")
    audio_vae, vocoder = write_tiny_audio_checkpoints(folder / "mmaudio")
    text = write_tiny_text_encoder(folder / "umt5", d_model=text_dim)
    paths = EncoderPaths(video_vae=str(video), audio_vae=str(audio_vae), text_encoder=str(text), text_len=text_len,
                         audio_config=TINY_AUDIO)
    return paths, vocoder
