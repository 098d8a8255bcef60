"""Encoders: tiny random-weight models in the released file formats, loaded through the public API.

Audio modules are also checked against the Ovi reference code: full-size key names and shapes
(`fixtures/encoders/keys_*.json`) and the outputs of a tiny reference model
(`fixtures/encoders/mmaudio_tiny_reference.safetensors`); see fixtures/encoders/README.md.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAMPLE_CLIPS
import torch
from diffusers import AutoencoderKLWan
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ovi_pl.encoders import (
    WAN22_VAE_ARCH,
    AudioVAE,
    AudioVAEConfig,
    BigVGANConfig,
    BigVGANVocoder,
    CheckpointMismatchError,
    MMAudioVAE,
    UMT5TextEncoder,
    VideoVAE,
    read_av_clip,
)
from ovi_pl.encoders.tiny import (
    TINY_AUDIO,
    write_tiny_audio_checkpoints,
    write_tiny_text_encoder,
    write_tiny_video_vae,
)

FIXTURES = Path(__file__).parent / "fixtures" / "encoders"
MEDIA = list(SAMPLE_CLIPS)

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_video_vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_video_vae(tmp_path_factory.mktemp("wan_vae"))


@pytest.fixture(scope="module")
def tiny_video_vae(tiny_video_vae_dir: Path) -> VideoVAE:
    return VideoVAE.from_pretrained(tiny_video_vae_dir)


@pytest.fixture(scope="module")
def tiny_audio_ckpts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_audio_checkpoints(tmp_path_factory.mktemp("mmaudio"))


@pytest.fixture(scope="module")
def tiny_audio_vae(tiny_audio_ckpts: tuple[Path, Path]) -> AudioVAE:
    return AudioVAE.from_checkpoints(*tiny_audio_ckpts, cfg=TINY_AUDIO)


@pytest.fixture(scope="module")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_text_encoder(tmp_path_factory.mktemp("umt5"), d_model=16, num_layers=2)


# ---------------------------------------------------------------------------- video


def test_wan22_geometry_of_full_size_config() -> None:
    with torch.device("meta"):
        vae = AutoencoderKLWan(**WAN22_VAE_ARCH, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    video = VideoVAE(vae)
    assert video.latent_shape(121, 704, 1280) == (48, 31, 44, 80)
    assert video.latent_shape(241, 704, 1280) == (48, 61, 44, 80)


def test_video_round_trip_shapes_and_normalisation(tiny_video_vae: VideoVAE) -> None:
    frames = torch.rand(2, 3, 9, 16, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = tiny_video_vae.encode(frames)
    assert latents.shape == (2, 48, 3, 1, 2) and latents.dtype == torch.float32  # 1 + 8/4 frames, /16 spatial

    raw = tiny_video_vae.vae.encode(frames).latent_dist.mode()
    mean = torch.tensor(tiny_video_vae.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(tiny_video_vae.vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(latents, (raw - mean) / std)

    decoded = tiny_video_vae.decode(latents)
    assert decoded.shape == frames.shape
    assert decoded.abs().max() <= 1.0
    torch.testing.assert_close(decoded, tiny_video_vae.vae.decode(raw).sample)


def test_video_accepts_uint8(tiny_video_vae: VideoVAE) -> None:
    frames = torch.randint(0, 256, (1, 3, 5, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    as_float = frames.float() / 127.5 - 1
    torch.testing.assert_close(tiny_video_vae.encode(frames), tiny_video_vae.encode(as_float))
    assert VideoVAE.to_uint8(as_float).equal(frames)


@pytest.mark.parametrize("shape", [(1, 3, 8, 16, 16), (1, 3, 5, 24, 16), (1, 4, 5, 16, 16)])
def test_video_rejects_bad_geometry(tiny_video_vae: VideoVAE, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        tiny_video_vae.encode(torch.zeros(shape))


def test_video_missing_keys_name_the_file(tiny_video_vae_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_video_vae_dir / "config.json").read_text())
    state = load_file(tiny_video_vae_dir / "diffusion_pytorch_model.safetensors")
    dropped = "decoder.conv_out.weight"
    del state[dropped]
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="diffusion_pytorch_model.safetensors") as err:
        VideoVAE.from_pretrained(tmp_path)
    assert dropped in str(err.value) and "1 missing" in str(err.value)


# ---------------------------------------------------------------------------- audio


def test_audio_keys_and_shapes_match_reference() -> None:
    with torch.device("meta"):
        vae, vocoder = MMAudioVAE(), BigVGANVocoder()
    for module, fixture in ((vae, "keys_mmaudio_vae_16k.json"), (vocoder, "keys_bigvgan_16k.json")):
        expected = json.loads((FIXTURES / fixture).read_text())
        ours = {k: list(v.shape) for k, v in module.state_dict().items()}
        assert ours == expected, fixture
    assert sum(p.numel() for p in vae.parameters()) == 171_657_218
    assert sum(p.numel() for p in vocoder.parameters()) == 112_231_250


def test_audio_matches_reference_outputs(tmp_path: Path) -> None:
    """A tiny reference VAE + vocoder, saved in the released formats, reproduce the reference's
    mel, latents, decoded mel and waveform to float32 accuracy."""
    path = FIXTURES / "mmaudio_tiny_reference.safetensors"
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        ref_cfg = json.loads(f.metadata()["vocoder_config"])
    assert ref_cfg["upsample_initial_channel"] == TINY_AUDIO.vocoder.upsample_initial_channel
    assert tuple(ref_cfg["resblock_kernel_sizes"]) == TINY_AUDIO.vocoder.resblock_kernel_sizes

    vae_state = {k.removeprefix("vae."): v for k, v in tensors.items() if k.startswith("vae.")}
    torch.save(vae_state, tmp_path / "v1-16.pth")
    generator = {k.removeprefix("vocoder."): v for k, v in tensors.items() if k.startswith("vocoder.")}
    torch.save({"generator": generator}, tmp_path / "best_netG.pt")
    model = AudioVAE.from_checkpoints(tmp_path / "v1-16.pth", tmp_path / "best_netG.pt", cfg=TINY_AUDIO)

    io = {k.removeprefix("io."): v for k, v in tensors.items() if k.startswith("io.")}
    torch.testing.assert_close(model.mel(io["waveform"]), io["mel"], atol=1e-5, rtol=1e-5)
    mean, logvar = model.vae.encode(io["mel"])
    torch.testing.assert_close(mean, io["latent_mean"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logvar, io["latent_logvar"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.encode(io["waveform"]), io["latent_mean"].transpose(1, 2), atol=1e-5, rtol=1e-5)
    decoded_mel = model.decode_mel(io["latent_mean"].transpose(1, 2))
    torch.testing.assert_close(decoded_mel, io["decoded_mel"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.vocoder(io["decoded_mel"]), io["decoded_audio"], atol=1e-6, rtol=1e-5)


def test_audio_round_trip_shapes(tiny_audio_vae: AudioVAE) -> None:
    assert TINY_AUDIO.latents_per_second == 31.25 and AudioVAEConfig().latents_per_second == 31.25
    waveform = 0.3 * torch.randn(2, 80_640, generator=torch.Generator().manual_seed(0))  # 5.04 s
    latents = tiny_audio_vae.encode(waveform)
    assert latents.shape == (2, 157, 20) and latents.dtype == torch.float32
    latents = latents[:1]  # one clip is enough for the vocoder, the slowest part on CPU
    assert tiny_audio_vae.num_latents(80_640) == 157 and tiny_audio_vae.num_latents(160_000) == 312
    audio = tiny_audio_vae.decode(latents)
    assert audio.shape == (1, 157 * 512)
    assert audio.abs().max() <= 1.0 and audio.std() > 0


def test_audio_sampling_uses_the_posterior(tiny_audio_vae: AudioVAE) -> None:
    waveform = 0.3 * torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    mean = tiny_audio_vae.encode(waveform)
    a = tiny_audio_vae.encode(waveform, sample=True, generator=torch.Generator().manual_seed(1))
    b = tiny_audio_vae.encode(waveform, sample=True, generator=torch.Generator().manual_seed(1))
    assert a.equal(b) and not a.equal(mean)


def test_vocoder_loads_legacy_weight_norm_names(tiny_audio_ckpts: tuple[Path, Path], tmp_path: Path) -> None:
    """BigVGAN checkpoints written with torch.nn.utils.weight_norm use weight_g / weight_v."""
    state = torch.load(tiny_audio_ckpts[1], weights_only=True)["generator"]
    renames = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    legacy = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        legacy[key] = value
    assert any(k.endswith("weight_g") for k in legacy)
    torch.save({"generator": legacy}, tmp_path / "best_netG.pt")
    a = AudioVAE.from_checkpoints(tiny_audio_ckpts[0], tmp_path / "best_netG.pt", cfg=TINY_AUDIO)
    b = AudioVAE.from_checkpoints(*tiny_audio_ckpts, cfg=TINY_AUDIO)
    mel = torch.randn(1, 80, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.vocoder(mel), b.vocoder(mel))


def test_audio_loading_errors_name_file_and_keys(tiny_audio_ckpts: tuple[Path, Path], tmp_path: Path) -> None:
    vae_path, vocoder_path = tiny_audio_ckpts
    state = torch.load(vae_path, weights_only=True)
    del state["decoder.conv_out.weight"]
    torch.save(state, tmp_path / "v1-16.pth")
    with pytest.raises(CheckpointMismatchError, match=r"v1-16\.pth(.|\n)*missing keys: decoder\.conv_out\.weight"):
        AudioVAE.from_checkpoints(tmp_path / "v1-16.pth", vocoder_path, cfg=TINY_AUDIO)

    # The full-size config against tiny weights: every key is there, shapes are not.
    with pytest.raises(CheckpointMismatchError, match=r"misshapen keys: .*encoder\.conv_in\.weight"):
        AudioVAE.from_checkpoints(vae_path, None)

    torch.save(torch.load(vocoder_path, weights_only=True)["generator"], tmp_path / "bare_netG.pt")
    with pytest.raises(CheckpointMismatchError, match=r"bare_netG\.pt: expected the state dict under key 'generator'"):
        AudioVAE.from_checkpoints(vae_path, tmp_path / "bare_netG.pt", cfg=TINY_AUDIO)

    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        AudioVAE.from_checkpoints(tmp_path / "nowhere.pth", vocoder_path, cfg=TINY_AUDIO)


def test_audio_encoder_only(tiny_audio_ckpts: tuple[Path, Path]) -> None:
    model = AudioVAE.from_checkpoints(tiny_audio_ckpts[0], None, cfg=TINY_AUDIO)
    latents = model.encode(torch.zeros(1, 1024))
    assert latents.shape == (1, 2, 20)
    with pytest.raises(RuntimeError, match="vocoder"):
        model.decode(latents)


def test_audio_config_consistency() -> None:
    with pytest.raises(ValueError, match="hop"):
        AudioVAEConfig(vocoder=replace(BigVGANConfig(), upsample_rates=(4, 4, 2, 2, 2, 1)))


# ---------------------------------------------------------------------------- text


def test_text_encoder_pads_with_zeros(tiny_text_dir: Path) -> None:
    encoder = UMT5TextEncoder.from_pretrained(tiny_text_dir, dtype=torch.float32)
    prompts = ["A man says hello in the kitchen.", "two  women &amp; speak"]
    out = encoder.encode(prompts)
    assert out.context.shape == (2, 512, 16)
    cleaned = ("A man says hello in the kitchen.", "two women & speak")
    expected_lengths = [len(encoder.tokenizer(p).input_ids) for p in cleaned]
    assert out.lengths.tolist() == expected_lengths
    for i, n in enumerate(out.lengths.tolist()):
        assert out.context[i, n:].eq(0).all()
        assert out.context[i, :n].abs().amax(dim=-1).gt(0).all()
    # Real tokens do not see the padding: each prompt alone gives the same rows.
    alone = encoder.encode(prompts[1])
    torch.testing.assert_close(alone.context[0], out.context[1])


# ---------------------------------------------------------------------------- real media


def test_real_clip_through_tiny_encoders(tiny_video_vae: VideoVAE, tiny_audio_vae: AudioVAE) -> None:
    clip = read_av_clip(MEDIA[0], num_frames=121, fps=24.0, sample_rate=16_000)
    assert clip.video.dtype == torch.uint8 and clip.video.shape[:2] == (3, 121)
    assert clip.audio.shape == (80_640,)  # 5.04 s at 16 kHz
    assert clip.audio.square().mean().sqrt() > 1e-3  # the clips have speech

    h, w = clip.video.shape[2:]
    crop = clip.video[:, :, h // 2 - 16 : h // 2 + 16, w // 2 - 16 : w // 2 + 16]
    video_latents = tiny_video_vae.encode(crop.unsqueeze(0))
    audio_latents = tiny_audio_vae.encode(clip.audio.unsqueeze(0))
    assert video_latents.shape == (1, 48, 31, 2, 2)
    assert audio_latents.shape == (1, 157, 20)
    assert torch.isfinite(video_latents).all() and torch.isfinite(audio_latents).all()
    # Both modalities span the same 5.04 s: 31 latent frames of 4 video frames (first alone), 157 latents of 32 ms.
    assert abs((1 + 4 * (video_latents.shape[2] - 1)) / 24 - audio_latents.shape[1] / 31.25) < 0.05
    assert tiny_video_vae.decode(video_latents[:, :, :2]).shape == (1, 3, 5, 32, 32)
