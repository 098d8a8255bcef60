"""Rectified-flow objective shared by both training stages (DESIGN.md section 2).

x_s = (1 - s) x0 + s eps with s in [0, 1]; the network sees model time t = 1000 s and predicts
the velocity v = eps - x0. Video and audio get independent noise but one shared s per sample,
except in the directional tasks, where the conditioning modality stays clean at s = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

TimestepSampling = Literal["uniform", "logit_normal", "shifted"]


@dataclass(frozen=True)
class TimestepSampler:
    """Draws noise levels s in (0, 1).

    uniform: s ~ U(0, 1). logit_normal: s = sigmoid(N(mean, std)), which concentrates training
    on middle noise levels (SD3). shifted: uniform s mapped by shift*s / (1 + (shift-1)*s), the
    same map the sampler uses, pushing training towards high noise for large latents.
    """

    kind: TimestepSampling = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "logit_normal", "shifted"):
            raise ValueError(f"timestep sampling {self.kind!r}: use uniform, logit_normal or shifted")
        if self.logit_std <= 0 or self.shift <= 0:
            raise ValueError("logit_std and shift must be positive")

    def sample(self, batch: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
        if self.kind == "logit_normal":
            s = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(batch, generator=generator))
        else:
            s = torch.rand(batch, generator=generator)
            if self.kind == "shifted":
                s = shift_noise_level(s, self.shift)
        return s.to(device)


TASKS = ("joint", "video_to_audio", "audio_to_video")
Task = Literal["joint", "video_to_audio", "audio_to_video"]
JOINT, VIDEO_TO_AUDIO, AUDIO_TO_VIDEO = range(3)


@dataclass(frozen=True)
class TaskMix:
    """What each training sample learns, drawn per sample (a batch mixes tasks).

    joint: both modalities noised at one s, loss on both. video_to_audio: the video stays clean
    (s = 0), noise and loss on the audio only. audio_to_video: the mirror. `probabilities` are in
    TASKS order and sum to 1.
    """

    probabilities: tuple[float, float, float] = (1.0, 0.0, 0.0)

    @classmethod
    def parse(cls, task: str | Mapping[str, float], key: str = "model.task") -> TaskMix:
        """A task name, or {task: probability} e.g. {joint: 0.8, video_to_audio: 0.1, audio_to_video: 0.1}."""
        weights = {task: 1.0} if isinstance(task, str) else dict(task)
        unknown = sorted(set(weights) - set(TASKS))
        if unknown:
            raise ValueError(f"{key}: unknown task {', '.join(map(repr, unknown))}; use {', '.join(TASKS)} "
                             "or a mapping of them to probabilities")
        probs = tuple(float(weights.get(name, 0.0)) for name in TASKS)
        if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(f"{key}={dict(weights)}: probabilities must be >= 0 and sum to 1")
        return cls(probs)  # type: ignore[arg-type]

    @property
    def only(self) -> int | None:
        """The task index when every sample gets the same task."""
        return next((i for i, p in enumerate(self.probabilities) if p == 1.0), None)

    def trains(self, modality: Literal["video", "audio"]) -> bool:
        """Whether any sample can carry this modality's loss."""
        skipped = VIDEO_TO_AUDIO if modality == "video" else AUDIO_TO_VIDEO
        return any(p > 0 for i, p in enumerate(self.probabilities) if i != skipped)

    def draw(self, batch: int, generator: torch.Generator) -> Tensor:
        """Task indices [B] (CPU). A single task draws nothing, so joint runs keep their random stream."""
        if self.only is not None:
            return torch.full((batch,), self.only, dtype=torch.long)
        return torch.multinomial(torch.tensor(self.probabilities), batch, replacement=True, generator=generator)


def modality_noise_levels(s: Tensor, tasks: Tensor) -> tuple[Tensor, Tensor]:
    """(video s, audio s) [B]: the conditioning modality of a directional sample is clean (s = 0)."""
    tasks = tasks.to(s.device)
    zero = torch.zeros_like(s)
    return torch.where(tasks == VIDEO_TO_AUDIO, zero, s), torch.where(tasks == AUDIO_TO_VIDEO, zero, s)


def shift_noise_level(s: Tensor, shift: float) -> Tensor:
    """s' = shift*s / (1 + (shift - 1)*s): more time at high noise, same end points."""
    return shift * s / (1 + (shift - 1) * s)


def stratified_noise_levels(count: int) -> Tensor:
    """Midpoints of `count` equal strata of (0, 1): fixed levels for comparable validation loss."""
    return (torch.arange(count, dtype=torch.float32) + 0.5) / count


def to_model_time(s: Tensor) -> Tensor:
    return 1000.0 * s


def add_noise(x0: Tensor, noise: Tensor, s: Tensor) -> Tensor:
    """x_s for a batch of clean latents; s [B] broadcasts over the other dims."""
    s = s.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    return noise - x0


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over real elements; mask [B, L] marks real tokens of [B, L, C] tensors."""
    err = (prediction.float() - target.float()).square()
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype).unsqueeze(-1).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def length_mask(lengths: Tensor, max_length: int) -> Tensor:
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def drop_text(context: Tensor, drop_prob: float, generator: torch.Generator) -> Tensor:
    """Zero whole prompts with probability `drop_prob` so the model also learns the unconditional
    velocity that classifier-free guidance needs (an all-zero context is the empty prompt)."""
    if drop_prob <= 0:
        return context
    keep = (torch.rand(context.shape[0], generator=generator) >= drop_prob).to(context.device, context.dtype)
    return context * keep.view(-1, *([1] * (context.dim() - 1)))


def step_generator(seed: int, step: int, rank: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, step, rank, stream), so a resumed run draws the
    same noise, timesteps and text dropout as an uninterrupted one."""
    mixed = (seed * 1_000_003 + step) * 1_009 + rank * 31 + stream
    return torch.Generator().manual_seed(mixed % (2**63 - 1))


def noise_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)

