"""Joint audio-video sampling: classifier-free guidance per modality with skip-layer guidance.

Each step runs the model twice (DESIGN.md section 2): once with the prompt, once "unconditional"
with each modality's negative prompt and one block pair skipped (skip-layer guidance), then
v = v_neg + scale * (v_pos - v_neg) with separate scales for video and audio. Image-to-video keeps
the first latent frame clean: it is written back before every forward pass and after every step,
and the model is told (`first_frame_clean`) to treat it as noise level 0. The directional tasks do
the same with a whole modality: a given video (video-to-audio) or audio (audio-to-video) latent
stays clean at model time 0 while the solver moves only the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ovi_pl.generation.schedulers import FlowSolver, Solver

DEFAULT_VIDEO_NEGATIVE = "jitter, bad hands, blur, distortion"
DEFAULT_AUDIO_NEGATIVE = "robotic, muffled, echo, distorted"


@dataclass(frozen=True)
class SamplerConfig:
    """Solver, schedule and guidance. Guidance 1.0 for both modalities skips the unconditional pass."""

    solver: Solver = "unipc"
    steps: int = 50
    shift: float = 5.0
    video_guidance: float = 4.0
    audio_guidance: float = 3.0
    # Block pair skipped in the unconditional pass; None runs the full model there.
    skip_layer: int | None = 11
    video_negative_prompt: str = DEFAULT_VIDEO_NEGATIVE
    audio_negative_prompt: str = DEFAULT_AUDIO_NEGATIVE
    seed: int = 0

    @property
    def guided(self) -> bool:
        return self.video_guidance != 1.0 or self.audio_guidance != 1.0


@dataclass
class Conditioning:
    """Text contexts [B, tokens, text_dim] for the conditional and the unconditional pass."""

    video: Tensor
    audio: Tensor
    video_negative: Tensor
    audio_negative: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(*(t.to(device=device, dtype=dtype) for t in
                              (self.video, self.audio, self.video_negative, self.audio_negative)))

    def select(self, index: slice) -> Conditioning:
        return Conditioning(self.video[index], self.audio[index], self.video_negative[index], self.audio_negative[index])


def guided_velocity(
    model: nn.Module,
    video: Tensor,
    audio: Tensor,
    t: Tensor,
    cond: Conditioning,
    cfg: SamplerConfig,
    first_frame_clean: bool,
    dtype: torch.dtype | None = None,
    audio_t: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Guided velocities (float32) at model time t [B] in [0, 1000] (the audio's `audio_t` when it
    differs). Latents are cast to `dtype` when given; t never is (the model embeds it in float32,
    as the reference does)."""
    if dtype is not None:
        video, audio = video.to(dtype), audio.to(dtype)
    times = {} if audio_t is None else {"audio_t": audio_t}
    v_pos, a_pos = model(video, audio, t, cond.video, cond.audio, first_frame_clean=first_frame_clean, **times)
    if not cfg.guided:
        return v_pos.float(), a_pos.float()
    v_neg, a_neg = model(
        video, audio, t, cond.video_negative, cond.audio_negative,
        first_frame_clean=first_frame_clean, skip_block=cfg.skip_layer, **times,
    )
    v_neg, a_neg = v_neg.float(), a_neg.float()
    return (
        v_neg + cfg.video_guidance * (v_pos.float() - v_neg),
        a_neg + cfg.audio_guidance * (a_pos.float() - a_neg),
    )


def initial_noise(
    batch: int, video_shape: tuple[int, ...], audio_shape: tuple[int, ...], seed: int, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Noise drawn on the CPU from `seed`, so a seed gives the same clip on every device and rank."""
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, *video_shape, generator=gen)
    audio = torch.randn(batch, *audio_shape, generator=gen)
    return video.to(device), audio.to(device)


@torch.no_grad()
def sample(
    model: nn.Module,
    video_noise: Tensor,
    audio_noise: Tensor,
    cond: Conditioning,
    cfg: SamplerConfig,
    first_frame: Tensor | None = None,
    num_layers: int | None = None,
    dtype: torch.dtype | None = None,
    on_step: Callable[[int, Tensor, Tensor], None] | None = None,
    given_video: Tensor | None = None,
    given_audio: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Video [B, 48, F, H, W] and audio [B, L, 20] latents (float32) from their noise at s = 1.

    first_frame: [B, 48, 1, H, W] clean latent of the conditioning image (image-to-video).
    given_video / given_audio: clean latents of the noise's shape that stay as they are while the
    other modality is sampled (video-to-audio / audio-to-video); at most one.
    num_layers: the model's depth, to reject a skip_layer it does not have.
    dtype: what the model's inputs are cast to (latents and solver state stay float32).
    """
    if cfg.guided and cfg.skip_layer is not None and num_layers is not None and not 0 <= cfg.skip_layer < num_layers:
        raise ValueError(
            f"sampler.skip_layer={cfg.skip_layer} but the model has {num_layers} block pairs; "
            f"set it to a block in [0, {num_layers - 1}] or to null to disable skip-layer guidance"
        )
    if given_video is not None and given_audio is not None:
        raise ValueError("give the video or the audio to condition on, not both: nothing would be sampled")
    for name, given, noise in (("given_video", given_video, video_noise), ("given_audio", given_audio, audio_noise)):
        if given is not None and given.shape != noise.shape:
            raise ValueError(f"{name} must have the sampled latent's shape {tuple(noise.shape)}, got {tuple(given.shape)}")
    video_solver = FlowSolver(cfg.solver, cfg.steps, cfg.shift)
    audio_solver = FlowSolver(cfg.solver, cfg.steps, cfg.shift)
    video = (video_noise if given_video is None else given_video).float().to(video_noise.device)
    audio = (audio_noise if given_audio is None else given_audio).float().to(audio_noise.device)
    clean = first_frame is not None
    if clean:
        if first_frame.shape[2] != 1 or first_frame.shape[:2] != video.shape[:2] or first_frame.shape[3:] != video.shape[3:]:
            raise ValueError(f"first_frame must be [B, C, 1, H, W] matching video {tuple(video.shape)}, "
                             f"got {tuple(first_frame.shape)}")
        first_frame = first_frame.to(video.device, video.dtype)
    if clean:
        video[:, :, :1] = first_frame
    for i, model_time in enumerate(video_solver.model_times.tolist()):
        t = torch.full((video.shape[0],), model_time, device=video.device)
        clean_t = torch.zeros_like(t)
        video_t = clean_t if given_video is not None else t
        audio_t = None if given_video is None and given_audio is None else (clean_t if given_audio is not None else t)
        v, a = guided_velocity(model, video, audio, video_t, cond, cfg, first_frame_clean=clean, dtype=dtype,
                               audio_t=audio_t)
        if given_video is None:
            video = video_solver.step(v, video, i)
        if given_audio is None:
            audio = audio_solver.step(a, audio, i)
        if clean:
            # The solver moved frame 0 with a velocity the model was never trained to predict there.
            video[:, :, :1] = first_frame
        if on_step is not None:
            on_step(i, video, audio)
    return video, audio
