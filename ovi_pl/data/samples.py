"""One sample's way through loading: planned from its json alone when the shards are indexed
(filter and bucket), then materialised into tensors when a batch uses it."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from data_specs import AudioOnlySample, AudioVideoSample, parse_sample_meta
from data_specs.geometry import DEFAULT_TARGET_AREA, target_size
from data_specs.latents import AUDIO_LATENTS_PER_SECOND
from data_specs.sample import AUDIO_SAMPLE_RATE
from ovi_pl.media.audio import decode_audio
from ovi_pl.media.av_clip import read_video

from .geometry import clip_seconds, video_latent_grid
from .tar_reader import TarSample

Mode = Literal["raw", "latent"]
Modality = Literal["audio_video", "audio"]
VIDEO_MEMBER = "video_latents.npy"
AUDIO_MEMBER = "audio_latents.npy"
TEXT_MEMBER = "text_embedding.npy"
MAX_AUDIO_PAD_S = 0.1  # containers often end the audio a few ms before the video


class BadSampleError(ValueError):
    """A sample that cannot be used; the loader skips and counts it."""


class NotForThisRun(Exception):
    """A valid sample of a kind this run does not train on (audio-only clips in fusion training)."""


@dataclass(frozen=True)
class SampleConfig:
    mode: Mode = "latent"
    modality: Modality = "audio_video"
    num_frames: int = 121
    fps: float = 24.0
    target_area: int = DEFAULT_TARGET_AREA
    buckets: tuple[tuple[int, int], ...] | None = None
    max_audio_seconds: float = 12.0
    text_member: str = TEXT_MEMBER
    text_len: int = 512


@dataclass
class PlannedSample:
    tar: TarSample
    meta: AudioVideoSample | AudioOnlySample
    bucket: tuple[int, ...]  # samples batch together only within one bucket

    @property
    def key(self) -> str:
        return self.tar.key


def plan_sample(sample: TarSample, cfg: SampleConfig) -> PlannedSample:
    """Parse the json, decide whether this run uses the sample and which bucket it joins.

    Raises BadSampleError for a sample that breaks the spec or lacks what the mode needs, and
    NotForThisRun for a valid one of the wrong kind.
    """
    if sample.problems:  # duplicate members, links: WebDataset would refuse the sample
        raise BadSampleError("; ".join(sample.problems))
    if "json" not in sample.members:
        raise BadSampleError("no .json member")
    try:
        meta = parse_sample_meta(sample.members["json"], source=f"{sample.key}.json")  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadSampleError(str(exc)) from exc
    with_video = cfg.modality == "audio_video"
    if with_video and not isinstance(meta, AudioVideoSample):
        raise NotForThisRun(f"kind {meta.kind}")
    if cfg.mode == "latent":
        needed = [AUDIO_MEMBER, cfg.text_member] + ([VIDEO_MEMBER] if with_video else [])
        missing = [n for n in needed if meta.latent(n) is None or n not in sample.members]
        if missing:
            raise BadSampleError(f"latent mode needs the members {missing} (declared in the json and present); "
                                 "run the latent stage (python -m curation.stages.latents) on these shards")
        bucket = tuple(meta.latent(VIDEO_MEMBER).shape[1:]) if with_video else ()
        return PlannedSample(sample, meta, bucket)
    if with_video:
        video = meta.media.video
        if video.num_frames < cfg.num_frames:
            raise BadSampleError(f"clip has {video.num_frames} frames, {cfg.num_frames} needed")
        bucket = target_size(video.height, video.width, cfg.target_area, buckets=cfg.buckets)
        video_latent_grid(cfg.num_frames, *bucket)  # fails early on a geometry the VAE cannot take
        return PlannedSample(sample, meta, bucket)
    return PlannedSample(sample, meta, ())


def materialise(planned: PlannedSample, cfg: SampleConfig) -> dict[str, Any]:
    """Tensors of one sample: latents (latent mode) or frames and waveform (raw mode), plus text.

    Raises BadSampleError (or whatever a decoder raises) for a sample that does not load.
    """
    sample, meta = planned.tar, planned.meta
    with_video = cfg.modality == "audio_video"
    out: dict[str, Any] = {"key": sample.key, "caption": meta.caption}
    if cfg.text_member in sample.members:
        text = _load_npy(sample, cfg.text_member)
        if text.ndim != 2:
            raise BadSampleError(f"{cfg.text_member} has shape {list(text.shape)}, expected [tokens, dim]")
        out["text_embedding"] = text[: cfg.text_len]
    if cfg.mode == "latent":
        if with_video:
            video = _load_npy(sample, VIDEO_MEMBER)
            if tuple(video.shape[1:]) != planned.bucket:
                raise BadSampleError(f"{VIDEO_MEMBER} has shape {list(video.shape)}, the json says {planned.bucket}")
            out["video_latents"] = video
        audio = _load_npy(sample, AUDIO_MEMBER)
        if not with_video:
            audio = audio[: int(cfg.max_audio_seconds * AUDIO_LATENTS_PER_SECOND)]
        out["audio_latents"] = audio
        return out
    if with_video:
        mp4 = sample.read("mp4")
        # Resized and centre-cropped while decoding, so a 1344x704 clip never exists at full size. In a
        # DataLoader worker, in one thread: the workers keep the cores busy, and frame threads would add
        # their own cost to each clip (about a tenth more CPU time in bench/data_loading.py).
        frames = read_video(mp4, cfg.num_frames, cfg.fps, size=planned.bucket, name="the .mp4 member",
                            threads=1 if get_worker_info() is not None else 0)
        out["frames"] = torch.from_numpy(frames)
        seconds = clip_seconds(cfg.num_frames, cfg.fps)
    else:
        mp4 = None
        seconds = min(meta.media.duration_s, cfg.max_audio_seconds)
    out["waveform"] = _decode_audio(sample, seconds, mp4)
    return out


def _decode_audio(sample: TarSample, seconds: float, mp4: bytes | None) -> Tensor:
    """16 kHz mono over `seconds` from the .flac/.wav member, else from the mp4's track (aligned with its video)."""
    for ext in ("flac", "wav", "mp4"):
        if ext in sample.members:
            data = mp4 if ext == "mp4" and mp4 is not None else sample.read(ext)
            samples = decode_audio(data, AUDIO_SAMPLE_RATE, 0.0, seconds, MAX_AUDIO_PAD_S, name=f"the .{ext} member")
            return torch.from_numpy(samples)
    raise BadSampleError("no audio: neither a .flac/.wav member nor an .mp4")


def _load_npy(sample: TarSample, name: str) -> Tensor:
    try:
        array = np.load(io.BytesIO(sample.read(name)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadSampleError(f"member .{name} does not load: {exc}") from exc
    if not np.issubdtype(array.dtype, np.floating) or not _all_finite(array):
        raise BadSampleError(f"member .{name} is not a finite float array")
    return torch.from_numpy(array)  # in its stored precision; float32 on the training device


def _all_finite(array: np.ndarray) -> bool:
    """No inf or NaN. IEEE floats are non-finite exactly when their exponent bits are all ones, so the
    largest magnitude bit pattern tells; an order of magnitude faster than np.isfinite on float16,
    which converts every element."""
    if array.dtype.itemsize not in (2, 4, 8) or array.dtype.byteorder not in ("=", "|"):
        return bool(np.isfinite(array).all())
    bits = array.view(f"u{array.itemsize}")
    magnitude = np.bitwise_and(bits, np.array(np.iinfo(bits.dtype).max >> 1, dtype=bits.dtype))
    return array.size == 0 or magnitude.max() < np.array(np.inf, dtype=array.dtype).view(bits.dtype)
