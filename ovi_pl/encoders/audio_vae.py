"""Audio <-> latents for the audio tower: log-mel front end, MMAudio VAE, BigVGAN vocoder.

16 kHz mono waveform -> mel (hop 256, 62.5 frames/s) -> VAE posterior mean (halves time):
20 channels at 31.25 latents/s, e.g. 80640 samples (5.04 s) -> 157 latents. As in Ovi, the
tower trains on the posterior mean and no further latent normalisation is applied; the VAE's own
normalisation is the per-mel-bin mean/std it applies to its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ._loading import load_state_dict_strict, read_torch_checkpoint
from .bigvgan import BigVGANConfig, BigVGANVocoder
from .mel import LogMelSpectrogram, MelConfig
from .mmaudio_vae import MMAudioVAE, MMAudioVAEConfig

# BigVGAN training checkpoints keep the generator's state under this key.
VOCODER_STATE_KEY = "generator"


@dataclass(frozen=True)
class AudioVAEConfig:
    mel: MelConfig = MelConfig()
    vae: MMAudioVAEConfig = MMAudioVAEConfig()
    vocoder: BigVGANConfig = BigVGANConfig()

    def __post_init__(self) -> None:
        if self.vocoder.hop_length != self.mel.hop_length:
            raise ValueError(f"vocoder upsamples x{self.vocoder.hop_length}, mel hop is {self.mel.hop_length}")
        if self.vae.data_dim != self.mel.n_mels or self.vocoder.num_mels != self.mel.n_mels:
            raise ValueError("mel bins must agree between front end, VAE and vocoder")

    @classmethod
    def from_mapping(cls, values: dict) -> AudioVAEConfig:
        """Fields that differ from the released 16 kHz model, e.g. `{"vae": {"hidden_dim": 8}}`; unknown keys fail."""
        from jsonargparse import ArgumentParser

        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--audio_vae_config", type=cls)
        return parser.instantiate(parser.parse_object({"audio_vae_config": values})).audio_vae_config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> AudioVAEConfig:
        """`from_mapping` of a yaml file."""
        import yaml

        return cls.from_mapping(yaml.safe_load(Path(path).read_text()) or {})

    @property
    def samples_per_latent(self) -> int:
        return self.mel.hop_length * self.vae.time_downsample

    @property
    def latents_per_second(self) -> float:
        return self.mel.sample_rate / self.samples_per_latent


class AudioVAE(nn.Module):
    """waveform [B, samples] (16 kHz, [-1, 1]) <-> latents [B, L, 20] (the audio tower's layout)."""

    def __init__(self, cfg: AudioVAEConfig = AudioVAEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = LogMelSpectrogram(cfg.mel)
        self.vae = MMAudioVAE(cfg.vae)
        self.vocoder = BigVGANVocoder(cfg.vocoder)

    @classmethod
    def from_checkpoints(
        cls,
        vae_path: str | os.PathLike[str],
        vocoder_path: str | os.PathLike[str] | None,
        cfg: AudioVAEConfig = AudioVAEConfig(),
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> AudioVAE:
        """Load MMAudio's `v1-16.pth` and BigVGAN's `best_netG.pt` (state under 'generator').

        vocoder_path=None gives an encoder-only model (decode then raises).
        """
        # Built on meta and filled by assignment: no time spent on random init of ~280 M weights.
        with torch.device("meta"):
            model = cls(cfg)
        model.mel = LogMelSpectrogram(cfg.mel)
        load_state_dict_strict(model.vae, read_torch_checkpoint(vae_path), vae_path, assign=True)
        if vocoder_path is None:
            model.vocoder = None
        else:
            state = read_torch_checkpoint(vocoder_path, VOCODER_STATE_KEY)
            load_state_dict_strict(model.vocoder, state, vocoder_path, assign=True)
            model.vocoder.fold_weight_norm()
        # The mel front end stays float32: log10 of small energies is where bf16 would hurt.
        model.vae.to(device=device, dtype=dtype)
        if model.vocoder is not None:
            model.vocoder.to(device=device, dtype=dtype)
        model.mel.to(device=device)
        return model.eval().requires_grad_(False)

    def num_latents(self, num_samples: int) -> int:
        return self.mel.num_frames(num_samples) // self.cfg.vae.time_downsample

    @torch.no_grad()
    def encode(self, waveform: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Posterior mean (or a sample when `sample`) as [B, L, 20], L = samples // 512, float32."""
        dtype = self.vae.data_mean.dtype
        mel = self.mel(waveform.to(self.mel.mel_basis.device))
        # No trimming to an even frame count: the reference lets the pooling drop the odd frame,
        # and the frame before it still sees it through the 3-tap convolutions.
        mean, logvar = self.vae.encode(mel.to(dtype))
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * logvar).exp() * noise
        return z.float().transpose(1, 2)

    @torch.no_grad()
    def decode_mel(self, latents: Tensor) -> Tensor:
        """[B, L, 20] -> log-mel [B, 80, 2 L]."""
        return self.vae.decode(latents.transpose(1, 2).to(self.vae.data_mean.dtype))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """[B, L, 20] -> waveform [B, 512 L] in [-1, 1], float32."""
        if self.vocoder is None:
            raise RuntimeError("this AudioVAE was loaded without a vocoder; pass vocoder_path to decode")
        return self.vocoder(self.decode_mel(latents)).squeeze(1).float()
