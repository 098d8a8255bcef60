"""Sampling joint audio-video clips from a fusion model: solvers, guidance, the pipeline, the command."""

from ovi_pl.generation.components import ClipGeometry, GenerationEncoders
from ovi_pl.generation.pipeline import (
    GeneratedClip,
    decode_clips,
    encode_first_frame,
    encode_prompts,
    generate_latents,
    write_clip,
)
from ovi_pl.generation.sampler import Conditioning, SamplerConfig, guided_velocity, initial_noise, sample
from ovi_pl.generation.schedulers import FlowSolver

__all__ = [
    "ClipGeometry",
    "Conditioning",
    "FlowSolver",
    "GeneratedClip",
    "GenerationEncoders",
    "SamplerConfig",
    "decode_clips",
    "encode_first_frame",
    "encode_prompts",
    "generate_latents",
    "guided_velocity",
    "initial_noise",
    "sample",
    "write_clip",
]
