"""`python -m ovi_pl generate --config configs/generate.yaml`: prompts -> mp4 files with sound.

Writes one `NNN_<first-words>.mp4` per prompt and `manifest.csv` (file, prompt, image, seed) that
`python -m ovi_pl evaluate` reads. Unknown config keys fail before anything loads.
`--task video_to_audio --video in.mp4` samples sound for the given video and writes its video
stream unchanged with it; `--task audio_to_video --audio in.wav` the mirror (a .mov when the given
stream's codec does not go into an mp4, e.g. PCM wav).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from data_specs.captions import CaptionStyle
from ovi_pl.encoders import VideoVAE
from ovi_pl.generation.components import ClipGeometry, GenerationEncoders
from ovi_pl.generation.loading import is_training_checkpoint, load_fusion_model
from ovi_pl.generation.pipeline import (
    clip_file_name,
    decode_clips,
    encode_first_frame,
    encode_given_audio,
    encode_given_video,
    encode_prompts,
    generate_latents,
    write_clip,
)
from ovi_pl.generation.media_io import with_given_stream
from ovi_pl.generation.prompts import prompt_texts, read_prompts
from ovi_pl.generation.sampler import SamplerConfig
from ovi_pl.models.ovi import FusionConfig, get_model_config

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class GenerateConfig:
    """checkpoint: Ovi safetensors (file, index json or dir) or a training checkpoint dir (…/*.ckpt).
    prompts: csv with text_prompt (and optional image_path) or a text file with one prompt per line."""

    checkpoint: str
    prompts: str
    output_dir: str = "outputs/generate"
    model_config: str = "ovi-11b"  # geometry of a safetensors checkpoint; training checkpoints carry theirs
    # Audio-description style of the prompts: "model" = the released checkpoint's (Ovi 1.0 <AUDCAP>,
    # Ovi 1.1 "Audio:"; as written for other models), or "audcap", "audio_prefix", "as_written".
    caption_style: Literal["model", "audcap", "audio_prefix", "as_written"] = "model"
    ema: bool = False  # training checkpoints: sample with the EMA weights
    geometry: ClipGeometry = field(default_factory=ClipGeometry)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    encoders: GenerationEncoders = field(default_factory=GenerationEncoders)
    allow_previews: bool = False  # permit preview stand-ins for unset encoders (smoke tests only)
    limit: int | None = None  # only the first N prompts
    device: str = "auto"  # auto: cuda when available
    dtype: str = "bfloat16"  # model compute dtype; CPU runs fall back to float32
    # joint: text(-and-image)-to-audio-video; video_to_audio: sound for `video`; audio_to_video: pictures for `audio`.
    task: Literal["joint", "video_to_audio", "audio_to_video"] = "joint"
    video: str | None = None  # video_to_audio: the clip to dub, from its start for geometry.num_frames frames
    audio: str | None = None  # audio_to_video: the sound to animate, from its start for the clip's span

    def __post_init__(self) -> None:
        needs = {"video_to_audio": "video", "audio_to_video": "audio"}.get(self.task)
        for key in ("video", "audio"):
            given = getattr(self, key)
            if key == needs and given is None:
                raise ValueError(f"task={self.task} needs --{key} (the {key} file to condition on)")
            if key != needs and given is not None:
                raise ValueError(f"--{key} is only used with task={'video_to_audio' if key == 'video' else 'audio_to_video'}"
                                 f", not task={self.task}")
            if given is not None and not Path(given).is_file():
                raise ValueError(f"--{key} {given}: no such file")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m ovi_pl generate", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile, help="a yaml file of the options below")
    parser.add_class_arguments(GenerateConfig, as_group=False)
    return parser


def parse_config(argv: Sequence[str]) -> GenerateConfig:
    parser = build_parser()
    namespace = parser.instantiate(parser.parse_args(list(argv)))
    values = {f.name: namespace[f.name] for f in dataclasses.fields(GenerateConfig)}
    return GenerateConfig(**values)


def run_generate(cfg: GenerateConfig) -> list[Path]:
    if cfg.encoders.previews and not cfg.allow_previews:
        raise ValueError(
            f"encoders for {', '.join(cfg.encoders.previews)} are not set: give encoders.text_encoder, "
            "encoders.video_vae, encoders.audio_vae and encoders.vocoder (local paths), or set allow_previews: true"
        )
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    dtype = getattr(torch, cfg.dtype) if device.type == "cuda" else torch.float32
    specs = read_prompts(cfg.prompts)[: cfg.limit]
    if not is_training_checkpoint(cfg.checkpoint):
        cfg.geometry.for_model(get_model_config(cfg.model_config))  # a bad geometry fails before loading
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    model = load_fusion_model(cfg.checkpoint, cfg.model_config, cfg.ema, device, dtype)
    geometry = cfg.geometry.for_model(model.cfg)
    tower = model.cfg.video
    text = cfg.encoders.text(tower.text_len, tower.text_dim, device)
    cond = encode_prompts(text, prompt_texts(specs, caption_style(cfg.caption_style, model.cfg)), cfg.sampler)
    del text  # umT5-xxl is large; it is not needed once the prompts are embedded
    video_vae, audio_vae = cfg.encoders.video(device), cfg.encoders.audio(device)
    given_video = None if cfg.video is None else encode_given_video(video_vae, cfg.video, geometry)
    given_audio = None if cfg.audio is None else encode_given_audio(audio_vae, cfg.audio, geometry)

    written: list[Path] = []
    rows = []
    for i, spec in enumerate(specs):
        start = time.perf_counter()
        sampler = dataclasses.replace(cfg.sampler, seed=cfg.sampler.seed + i)
        if spec.image is not None and given_video is not None:
            raise ValueError(f"prompt {i + 1} gives image {spec.image}, but task=video_to_audio keeps the given video")
        first = None if spec.image is None else encode_first_frame(video_vae, spec.image, geometry)
        video, audio = generate_latents(
            model, cond.select(slice(i, i + 1)), geometry, sampler, device,
            first_frame=first, num_layers=tower.num_layers, dtype=dtype,
            given_video=given_video, given_audio=given_audio,
        )
        path = out / clip_file_name(i, spec.text)
        if cfg.task == "video_to_audio":
            path = with_given_stream(cfg.video, "video", path, audio=audio_vae.decode(audio)[0].float())
        elif cfg.task == "audio_to_video":
            frames = VideoVAE.to_uint8(video_vae.decode(video))[0].cpu()
            path = with_given_stream(cfg.audio, "audio", path, frames=frames, fps=geometry.fps)
        else:
            (clip,) = decode_clips(video_vae, audio_vae, video, audio, geometry.fps)
            path = write_clip(clip, path)
        written.append(path)
        rows.append({"file": path.name, "text_prompt": spec.text, "image_path": spec.image or "", "seed": sampler.seed})
        print(f"[{i + 1}/{len(specs)}] {path} ({time.perf_counter() - start:.1f} s)", flush=True)
    with (out / MANIFEST).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "text_prompt", "image_path", "seed"])
        writer.writeheader()
        writer.writerows(rows)
    return written


def caption_style(choice: str, model: FusionConfig) -> CaptionStyle | None:
    """The style prompts are rewritten into, None for as written."""
    if choice == "model":
        return None if model.clip is None else model.clip.caption_style
    return None if choice == "as_written" else choice  # type: ignore[return-value]


def main(argv: Sequence[str]) -> None:
    run_generate(parse_config(argv))
