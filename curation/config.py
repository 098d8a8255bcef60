"""The curation run's typed config: every threshold is a field, the paper's rules are the defaults.

Loaded from YAML and validated in full before Ray starts or any file is touched, so a typo in a
key or an out-of-range value costs seconds, not a half-finished run. Unknown keys are errors
(extra="forbid") and every error names its dotted key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .stages.av_offset import AVOffsetFilter
from .stages.captions import CaptionConfig
from .stages.speech import SpeechConfig
from .stages.syncnet import SyncNetFilter

REPO_ROOT = Path(__file__).resolve().parent.parent

_PosInt = Annotated[int, Field(gt=0)]
_PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RayConfig(_Section):
    # None: RAY_ADDRESS if set (ray job submit sets it), else an in-process cluster.
    address: str | None = None
    num_cpus: _PosInt | None = Field(None, description="CPUs of the in-process cluster; None: all of this machine")
    # Interpreter of the second environment, for stages with environment="models" (README "Environments").
    models_python: Path = Path(".venv-models/bin/python")


class InputsConfig(_Section):
    # Local files or directories (searched recursively) and fsspec URLs (s3://bucket/prefix, gs://..., file://...).
    paths: list[str] = Field(default_factory=list)
    # A text file with one path or URL a line, a .jsonl file of {"path": ..., "caption": ...} objects, or a .csv
    # with a `path` column (and optionally `caption`).
    manifest: Path | None = None
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"])

    @model_validator(mode="after")
    def _some_input(self) -> InputsConfig:
        if not self.paths and self.manifest is None:
            raise ValueError("give inputs.paths (files, directories or URLs) or inputs.manifest")
        return self


class OutputConfig(_Section):
    dir: Path = Path("runs/curation")
    shard_max_samples: _PosInt = 256
    # ~1 GB tars stream well from object storage; whichever limit is hit first closes a shard.
    shard_max_bytes: _PosInt = 1_000_000_000


class ClipConfig(_Section):
    # Ovi trains on 121-frame 24 fps clips (5.04 s); data_specs pins 24 fps and 16 kHz mono audio.
    num_frames: _PosInt = 121
    fps: Literal[24] = 24
    audio_sample_rate: Literal[16000] = 16000


class ProbeConfig(_Section):
    # Below/above these a stream is a thumbnail, a broken header or a panorama nobody trains on.
    min_side: _PosInt = 32
    max_side: _PosInt = 8192
    max_duration_s: _PosFloat = 6 * 3600.0
    require_audio: bool = True


class ScenesConfig(_Section):
    # PySceneDetect ContentDetector defaults; a clip never crosses a detected cut.
    threshold: _PosFloat = 27.0
    min_scene_len_frames: _PosInt = 15
    # Cap per scene so one long static shot cannot dominate the data; None takes every clip.
    max_clips_per_scene: _PosInt | None = None


class TranscodeConfig(_Section):
    # Resize and centre-crop each clip to about this many pixels (sides multiples of 32, the
    # clip's aspect ratio; ovi_pl.data.geometry), the size latents are computed at. None keeps
    # the source size.
    target_area: _PosInt | None = None
    crf: Annotated[int, Field(ge=0, le=51)] = 18
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                    "veryslow"] = "veryfast"
    audio_bitrate_kbps: _PosInt = 192
    timeout_s: _PosFloat = 600.0


class AreaFilter(_Section):
    enabled: bool = True
    # Pixel count of the source resolution; the paper keeps >= 720x720.
    min_area: _PosInt = 720 * 720


class VolumeFilter(_Section):
    enabled: bool = True
    # Mean volume (RMS in dBFS, what ffmpeg volumedetect reports) of the 16 kHz mono track; paper: >= -60 dB.
    min_mean_volume_db: _Finite = -60.0


class MotionFilter(_Section):
    enabled: bool = True
    # Mean Farneback flow magnitude between consecutive frames, pixels per frame at `resize_width`. The paper
    # drops static clips without giving a number. Measured at 320 px: the talking scenes in shared/media score
    # 0.05-0.12, a still image 0.0, so 0.02 drops stills and slideshows but keeps calm speech.
    min_motion: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.02
    num_pairs: Annotated[int, Field(ge=1, le=64)] = 8
    resize_width: Annotated[int, Field(ge=32, le=1920)] = 320


class AestheticFilter(_Section):
    # Off by default: it needs .venv-models (`make models-env`) and local weights.
    enabled: bool = False
    # LAION improved-aesthetic-predictor score, ~1-10. The paper gives no number; 4.5 is the common LAION cut.
    min_score: _Finite = 4.5
    clip_model: str = "ViT-L-14"
    clip_weights: Path | None = Field(None, description="open_clip state dict (.pt/.bin/.safetensors) of clip_model")
    head_weights: Path | None = Field(None, description="LAION aesthetic MLP state dict (sac+logos+ava1-l14-linearMSE.pth)")
    num_frames: Annotated[int, Field(ge=1, le=32)] = 3
    actors: _PosInt = 1
    gpus_per_actor: Annotated[float, Field(ge=0)] = 0.0
    batch_size: _PosInt = 8
    environment: Literal["main", "models"] = "models"

    @model_validator(mode="after")
    def _weights_when_enabled(self) -> AestheticFilter:
        if self.enabled:
            missing = [name for name in ("clip_weights", "head_weights") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"aesthetic filter is enabled but {', '.join(missing)} is not set; point it at "
                                 "local weight files or set enabled: false")
        return self


class FiltersConfig(_Section):
    area: AreaFilter = AreaFilter()
    volume: VolumeFilter = VolumeFilter()
    motion: MotionFilter = MotionFilter()
    aesthetic: AestheticFilter = AestheticFilter()
    syncnet: SyncNetFilter = SyncNetFilter()
    av_offset: AVOffsetFilter = AVOffsetFilter()


class CurationConfig(_Section):
    inputs: InputsConfig
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    clip: ClipConfig = ClipConfig()
    probe: ProbeConfig = ProbeConfig()
    scenes: ScenesConfig = ScenesConfig()
    transcode: TranscodeConfig = TranscodeConfig()
    filters: FiltersConfig = FiltersConfig()
    speech: SpeechConfig = SpeechConfig()
    captions: CaptionConfig = CaptionConfig()

    @model_validator(mode="after")
    def _sides_ordered(self) -> CurationConfig:
        if self.probe.min_side > self.probe.max_side:
            raise ValueError(f"probe.min_side ({self.probe.min_side}) is above probe.max_side ({self.probe.max_side})")
        return self

    def models_python(self) -> Path:
        """The .venv-models interpreter, resolved against the repository root when relative."""
        path = self.ray.models_python
        return path if path.is_absolute() else REPO_ROOT / path


class ConfigError(ValueError):
    """A config file that cannot run; the message names every bad key and how to fix it."""


def load_config(path: str | Path, overrides: dict | None = None) -> CurationConfig:
    """Read and validate a YAML config; relative input/output paths stay relative to the working directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        config = CurationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid curation config:\n  " + "\n  ".join(_format(e) for e in exc.errors())) from exc
    problems = _environment_problems(config)
    if problems:
        raise ConfigError(f"{path}: " + "\n  ".join(problems))
    return config


def _format(error: dict) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against configs/curation.yaml)"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{key}: {msg} (got {error.get('input')!r})" if error["type"] != "missing" else f"{key}: required"


def _environment_problems(config: CurationConfig) -> list[str]:
    """Checks that need the file system: cheap, and failing them later would waste the run so far."""
    from .captioning.backends import local_model_problem as caption_model_problem
    from .speech.asr import local_model_problems

    problems = []
    models_env_missing = not config.models_python().exists()

    def needs_models_env(key: str) -> None:
        if models_env_missing:
            problems.append(f"{key} runs in .venv-models but {config.models_python()} does not exist; "
                            "run `make models-env` or set ray.models_python")

    def needs_files(key: str, paths: dict[str, Path | None]) -> None:
        for name, path in paths.items():
            if path is not None and not Path(path).is_file():
                problems.append(f"{key}.{name}: {path} does not exist")

    aesthetic = config.filters.aesthetic
    if aesthetic.enabled:
        needs_files("filters.aesthetic", {"clip_weights": aesthetic.clip_weights,
                                          "head_weights": aesthetic.head_weights})
        if aesthetic.environment == "models":
            needs_models_env("filters.aesthetic (environment: models)")
    syncnet = config.filters.syncnet
    if syncnet.enabled:
        needs_files("filters.syncnet", {"weights": syncnet.weights, "detector_weights": syncnet.detector_weights})
    asr = config.speech.asr
    if asr.enabled:
        problems += local_model_problems(asr.settings())
        if asr.backend == "whisperx":
            needs_models_env("speech.asr (backend: whisperx)")
    captions = config.captions
    if captions.enabled and captions.backend == "local":
        problem = caption_model_problem(captions.local.model_dir or "")
        if problem:
            problems.append(problem)
    if config.inputs.manifest is not None and not config.inputs.manifest.is_file():
        problems.append(f"inputs.manifest: {config.inputs.manifest} does not exist")
    return problems
