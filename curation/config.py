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

from ovi_pl.envs import DEFAULT_ENVS, resolved
from ovi_pl.sync.judge import MOUTH_MIN_CONFIDENCE, ONSET_MIN_CONFIDENCE
from ovi_pl.sync.mouth import MouthSettings

_PosInt = Annotated[int, Field(gt=0)]
_PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Prob = Annotated[float, Field(ge=0, le=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class EnvironmentConfig(_Section):
    """A named Python environment for model stages (ovi_pl/envs.py); exactly one of the fields. Locked:
    ray, pyarrow, numpy and cloudpickle must be the driver's versions (checked at config load)."""

    # An interpreter at this path on every node (relative: to the repository root, where `ray job submit
    # --working-dir .` does not upload a git-ignored venv).
    python: Path | None = None
    # Pinned requirements Ray installs on each node over the driver's packages, with pip or uv.
    pip: list[str] | None = None
    uv: list[str] | None = None
    requirements: Path | None = Field(None, description="a pinned requirements file Ray installs with pip on each node")
    image_uri: str | None = Field(None, description="a container image Ray runs the stage's workers in")

    @model_validator(mode="after")
    def _one_kind(self) -> EnvironmentConfig:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of python, pip, uv, requirements, image_uri (got {given or 'none'})")
        return self


class RayConfig(_Section):
    # None: RAY_ADDRESS if set (ray job submit sets it), else an in-process cluster.
    address: str | None = None
    num_cpus: _PosInt | None = Field(None, description="CPUs of the in-process cluster; None: all of this machine")
    # A run in which no stage takes or hands on a row for this long fails, naming the stages it waits on
    # (Ray Data's no-progress guard). It must exceed the longest single batch: scenes on the longest source,
    # a model stage's setup. None: wait forever.
    stall_timeout_s: _PosFloat | None = 1800.0


class InputsConfig(_Section):
    # Local files or directories (searched recursively) and fsspec URLs (s3://bucket/prefix, gs://..., file://...).
    # A path with nothing there is a typo: the run stops before any work, naming every such path.
    paths: list[str] = Field(default_factory=list)
    # A text file with one path or URL a line, a .jsonl file of {"path": ..., "caption": ...} objects, or a .csv
    # with a `path` column (and optionally `caption`). Each line names one file and gets one record (a directory
    # or a repeated line is rejected, saying so); unreadable lines and captions `package` would reject fail
    # the config load (curation.preflight), each line listed.
    manifest: Path | None = None
    # Matched without case. Beside the web's containers: camcorders' (AVCHD .mts/.m2ts, DV, MPEG-2 .mpg) and
    # broadcast transport streams (.ts), where interlaced footage comes from.
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mts",
                                                           ".m2ts", ".ts", ".dv", ".mpg", ".mpeg"])

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
    # A shard open this long is written though not full, so a slow run commits its finished inputs
    # (and a killed one loses at most this much work). Checked as rows arrive.
    shard_max_wait_s: _PosFloat = 600.0
    # Seconds between progress lines (per stage and per run) in the log.
    progress_interval_s: _PosFloat = 30.0


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
    # Clips are 24 fps, so a slower source repeats frames: at 15 fps 3 of every 8 clip frames are repeats, at
    # 12 fps every frame shows twice. Those judder, teach the model stutter and give the motion filter's
    # frame pairs zero flow. 23 keeps every standard camera and broadcast rate (23.976, 24, 25, 29.97, 30, 50,
    # 60) and drops 15-20 fps webcam and screen captures, 12 fps animation exports, timelapses and slideshows;
    # lower it (e.g. 14) to keep 15 fps webcam speech. 0 keeps every rate.
    min_fps: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 23.0
    # Seconds of audio per second of video (stream durations from the header). Below it the clips cut
    # from the part without audio get inserted silence; 0.9 allows a short late start or early end.
    # 0 keeps any audio length; so does require_audio: false, which accepts silence in place of audio.
    min_audio_coverage: _Prob = 0.9


class ScenesConfig(_Section):
    # Scene detection decodes the source once at clip.fps and 256 px (curation/stages/scenes.py); a clip never
    # crosses a cut and never holds a frame of a dissolve, fade or black. Measurements: bench/scenes.py.
    # Hard cuts: PySceneDetect ContentDetector's default (mean HSV change between consecutive frames, 0-255).
    # Every frame above it is a cut: there is no minimum scene length, because PySceneDetect's merging of
    # short scenes leaves the cut out of a shot shorter than that inside the next scene, and so inside a clip.
    threshold: _PosFloat = 27.0
    # A cut into a stretch of at most this many frames that then returns to the shot before it (the frame
    # after scores below `threshold` against the frame before) is a flash, not a cut, and stays in the shot.
    # 3 frames = 125 ms at 24 fps: a photo flash lights 1-2 frames (a 12 fps source shows each twice); a
    # picture that returns after 4+ frames is more likely an inserted shot. 0: every cut is a cut.
    max_flash_frames: Annotated[int, Field(ge=0, le=24)] = 3
    # Dissolves and fades: in a window of 13-49 frames whose end frames differ by at least `blend_min_change`
    # (mean 8-bit change at 64 px), a middle frame closer to the ends' average than `blend_max_residual` times
    # that change is blended; the span around it is then grown on the histogram change. Measured in each
    # source's best window: dissolves and fades 0.01-0.25 (0.2-0.25 only over testsrc2's heavy motion); cuts,
    # flashes, pans, zooms, camera shake and talking people >= 0.34. Below a change of 12 the test reads noise
    # (a talking head scores 0.33 at a change of 9).
    blend_min_change: _PosFloat = 12.0
    blend_max_residual: Annotated[float, Field(gt=0, lt=0.5)] = 0.3
    # Frames whose mean 8-bit level is below this (PySceneDetect ThresholdDetector's default) are black and
    # kept out of clips: the middle of a fade through black, and black before a cut into a dark shot, which
    # ContentDetector may not score as a cut. 0 turns it off.
    black_threshold: Annotated[int, Field(ge=0, le=255)] = 12
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
    # Width of the frame cache transcode writes beside each clip (MJPEG, deleted with the clip's work files):
    # motion, the onset judge, aesthetic and caption frames decode it instead of the clip when it is at
    # least as wide as they need (bench/RESULTS.md; the mouth judge reads the clip). 640 covers every
    # default (motion 320, captions 512, aesthetic 640, onset 96); None writes none.
    frame_cache_width: Annotated[int, Field(ge=16)] | None = 640


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
    clip_model_config: Path | None = Field(None, description="open_clip model config json registering clip_model, "
                                           "for a model open_clip does not ship")
    clip_weights: Path | None = Field(None, description="open_clip state dict (.pt/.bin/.safetensors) of clip_model")
    head_weights: Path | None = Field(None, description="LAION aesthetic MLP state dict (sac+logos+ava1-l14-linearMSE.pth)")
    num_frames: Annotated[int, Field(ge=1, le=32)] = 3
    # Frames are read at this width (CLIP resizes their short side to 224 px); <= transcode.frame_cache_width
    # reads them from the frame cache.
    frame_width: Annotated[int, Field(ge=224, le=4096)] = 640
    actors: _PosInt = 1
    gpus_per_actor: Annotated[float, Field(ge=0)] = 0.0
    batch_size: _PosInt = 8
    environment: str = "models"              # a name in `envs`, or "main" (the driver's)

    @model_validator(mode="after")
    def _weights_when_enabled(self) -> AestheticFilter:
        if self.enabled:
            missing = [name for name in ("clip_weights", "head_weights") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"aesthetic filter is enabled but {', '.join(missing)} is not set; point it at "
                                 "local weight files or set enabled: false")
        return self


class SyncNetFilter(_Section):
    enabled: bool = False
    weights: Path | None = Field(None, description="syncnet_v2.model (a state dict; loaded weights-only)")
    detector: Literal["haar", "yunet", "s3fd"] = "haar"
    detector_weights: Path | None = Field(None, description="face_detection_yunet_2023mar.onnx for detector yunet; "
                                          "an S3FD state dict (sfd_face.pth or s3fd-619a316812.pth) for s3fd")
    max_abs_offset: Annotated[int, Field(ge=0)] = 3          # paper: |offset| <= 3 frames
    min_confidence: Annotated[float, Field(allow_inf_nan=False)] = 1.5   # paper: confidence > 1.5
    vshift: Annotated[int, Field(ge=1, le=50)] = 15
    no_face: Literal["keep", "reject"] = "keep"
    detect_width: Annotated[int, Field(ge=64)] = 640
    detect_every: _PosInt = 1
    # The reference pipeline wants 100 frames (4 s); our clips are 5.04 s, so 2 s of a face is enough.
    min_track_frames: Annotated[int, Field(ge=5)] = 50
    max_gap_frames: _PosInt = 25
    min_face_size: Annotated[float, Field(ge=0)] = 48.0
    crop_scale: Annotated[float, Field(ge=0, le=2)] = 0.4
    max_track_frames: _PosInt | None = None
    actors: _PosInt = 1
    gpus_per_actor: Annotated[float, Field(ge=0)] = 0.0
    batch_size: _PosInt = 4

    @model_validator(mode="after")
    def _weights_when_enabled(self) -> SyncNetFilter:
        if self.enabled:
            needed = ("weights", "detector_weights") if self.detector in ("yunet", "s3fd") else ("weights",)
            missing = [n for n in needed if getattr(self, n) is None]
            if missing:
                raise ValueError(f"syncnet filter is enabled but {', '.join(missing)} is not set (detector_weights is "
                                 f"needed for detector yunet or s3fd, here {self.detector}); point it at local "
                                 "files, use detector: haar, or set enabled: false")
        return self


class MouthJudge(_Section):
    enabled: bool = True
    min_confidence: _PosFloat = MOUTH_MIN_CONFIDENCE    # how it was calibrated: ovi_pl/sync/judge.py
    # Defaults are the judge's own (ovi_pl/sync/mouth.py MouthSettings, where each is explained).
    frame_width: Annotated[int, Field(ge=160, le=1920)] = MouthSettings.frame_width
    detect_every: _PosInt = MouthSettings.detect_every
    search_every: _PosInt = MouthSettings.search_every   # frames between searches for faces of every size
    min_track_frames: Annotated[int, Field(ge=24)] = MouthSettings.min_track_frames
    min_face_size: Annotated[float, Field(ge=0)] = MouthSettings.min_face_size   # pixels at frame_width

    @model_validator(mode="after")
    def _search_on_detect_frames(self) -> MouthJudge:
        if self.search_every % self.detect_every:
            raise ValueError(f"filters.sync.mouth.search_every {self.search_every} is not a multiple of detect_every "
                             f"{self.detect_every}: make it one (e.g. {4 * self.detect_every})")
        return self


class OnsetJudge(_Section):
    enabled: bool = True
    min_confidence: Annotated[float, Field(ge=-1, le=1)] = ONSET_MIN_CONFIDENCE  # see ovi_pl/sync/judge.py
    motion_width: Annotated[int, Field(ge=16, le=1024)] = 96


class SyncFilter(_Section):
    """The weight-free sync judges, for clips SyncNet did not decide: the mouth judge for clips with a
    face track, the onset judge for the others. A judge whose confidence clears its gate verifies the
    clip; a verified |offset| above max_abs_offset rejects it (`av_offset`)."""

    enabled: bool = True
    max_abs_offset: Annotated[int, Field(ge=0)] = 3            # SyncNet's paper tolerance, in frames
    max_lag_frames: Annotated[int, Field(ge=1, le=100)] = 15
    # false: clips no judge could verify are kept and counted (report: kept unverified); true: rejected
    # as `sync_unverified`.
    reject_unverified: bool = False
    mouth: MouthJudge = MouthJudge()
    onset: OnsetJudge = OnsetJudge()


class FiltersConfig(_Section):
    area: AreaFilter = AreaFilter()
    volume: VolumeFilter = VolumeFilter()
    motion: MotionFilter = MotionFilter()
    aesthetic: AestheticFilter = AestheticFilter()
    syncnet: SyncNetFilter = SyncNetFilter()
    sync: SyncFilter = SyncFilter()


class VadConfig(_Section):
    enabled: bool = True
    threshold: _Prob = 0.5                   # silero-vad's default
    min_speech_ms: Annotated[int, Field(ge=0)] = 250
    min_silence_ms: Annotated[int, Field(ge=0)] = 100
    speech_pad_ms: Annotated[int, Field(ge=0)] = 30


class AsrConfig(_Section):
    enabled: bool = False                    # needs a local Whisper directory
    backend: Literal["faster_whisper", "whisperx"] = "whisperx"   # Emilia-Pipe: whisperx
    model_dir: Path | None = Field(None, description="ctranslate2 Whisper dir (e.g. faster-whisper-large-v3)")
    align_model_dir: Path | None = Field(None, description="Wav2Vec2ForCTC + processor dir; whisperx only")
    diarize_model: Path | None = Field(None, description="pyannote pipeline dir or config.yaml; whisperx only")
    language: str | None = None              # None: detect per clip
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: Literal["float32", "float16", "bfloat16", "int8", "int8_float16", "default"] = "float32"
    batch_size: Annotated[int, Field(gt=0)] = 8
    beam_size: Annotated[int, Field(gt=0)] = 5
    threads: Annotated[int, Field(gt=0)] = 1
    max_new_tokens: Annotated[int, Field(gt=0)] | None = None
    min_speakers: Annotated[int, Field(gt=0)] | None = None
    max_speakers: Annotated[int, Field(gt=0)] | None = None
    actors: Annotated[int, Field(gt=0)] = 1
    gpus_per_actor: Annotated[float, Field(ge=0)] = 0.0
    # Where backend whisperx runs: a name in `envs`, or "main" (faster_whisper always runs in "main").
    environment: str = "models"

    @model_validator(mode="after")
    def _consistent(self) -> AsrConfig:
        if self.enabled and self.model_dir is None:
            raise ValueError("speech.asr is enabled but model_dir is not set; give a local ctranslate2 Whisper dir")
        if self.backend == "faster_whisper" and (self.align_model_dir or self.diarize_model):
            raise ValueError("align_model_dir/diarize_model need backend: whisperx (runs in .venv-models)")
        return self


class AudioSegmentsConfig(_Section):
    enabled: bool = False
    max_s: Annotated[float, Field(gt=0, le=30)] = 12.0     # audio tower clips: up to 12 s (paper)
    min_speech_s: Annotated[float, Field(ge=0)] = 1.0
    min_sound_s: Annotated[float, Field(ge=0)] = 2.0
    merge_gap_s: Annotated[float, Field(ge=0)] = 0.6
    min_mean_volume_db: float = -60.0                        # same floor as the clip volume filter
    kinds: list[Literal["speech", "sound"]] = ["speech", "sound"]
    # The source's audio is read this much at a time (16 kHz float32: ~38 MB per 600 s), never whole.
    decode_window_s: Annotated[float, Field(gt=0)] = 600.0

    @model_validator(mode="after")
    def _window_holds_a_segment(self) -> AudioSegmentsConfig:
        if self.decode_window_s < self.max_s:
            raise ValueError(f"speech.audio_segments.decode_window_s ({self.decode_window_s}) must be at least "
                             f"max_s ({self.max_s}): a segment is cut from one window")
        return self


class SpeechConfig(_Section):
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    audio_segments: AudioSegmentsConfig = AudioSegmentsConfig()

    @model_validator(mode="after")
    def _speech_segments_need_asr(self) -> SpeechConfig:
        if self.audio_segments.enabled and "speech" in self.audio_segments.kinds and not self.asr.enabled:
            raise ValueError("speech.audio_segments makes speech segments, whose captions quote their words, but "
                             "speech.asr is disabled; enable speech.asr or set speech.audio_segments.kinds: [sound]")
        return self


class EndpointBackend(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"       # vLLM's OpenAI server
    model: str = "Qwen/Qwen2.5-Omni-7B"
    api_key_env: str | None = None                    # name of the env var holding the key; never the key
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_tokens: Annotated[int, Field(gt=0)] = 512
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.2
    # input_audio: the model hears the clip (Omni/Audio models); description: vision-only models read about it.
    audio_mode: Literal["input_audio", "description"] = "input_audio"


class LocalBackend(_Section):
    model_dir: str | None = None
    max_new_tokens: Annotated[int, Field(gt=0)] = 256
    device: str = "cpu"


class CaptionConfig(_Section):
    enabled: bool = False                    # needs an endpoint or a local model
    backend: Literal["endpoint", "local"] = "endpoint"
    endpoint: EndpointBackend = EndpointBackend()
    local: LocalBackend = LocalBackend()
    style: Literal["audcap", "audio_prefix"] = "audcap"   # Ovi's original checkpoints: audcap
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    num_frames: Annotated[int, Field(ge=1, le=32)] = 7    # paper: 7 evenly spaced frames
    frame_width: Annotated[int, Field(ge=64, le=2048)] = 512
    keep_manifest_caption: bool = True       # a good caption from the inputs manifest is used as is
    actors: Annotated[int, Field(gt=0)] = 1
    batch_size: Annotated[int, Field(gt=0)] = 4

    @model_validator(mode="after")
    def _local_needs_dir(self) -> CaptionConfig:
        if self.enabled and self.backend == "local" and not self.local.model_dir:
            raise ValueError("captions.backend is 'local' but captions.local.model_dir is not set")
        return self


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
    # Named environments model stages run in (README "Environments"); "main" is the driver's own.
    envs: dict[str, EnvironmentConfig] = Field(
        default_factory=lambda: {name: EnvironmentConfig.model_validate(spec) for name, spec in DEFAULT_ENVS.items()})

    @model_validator(mode="after")
    def _sides_ordered(self) -> CurationConfig:
        if self.probe.min_side > self.probe.max_side:
            raise ValueError(f"probe.min_side ({self.probe.min_side}) is above probe.max_side ({self.probe.max_side})")
        return self

    @model_validator(mode="after")
    def _environments_named(self) -> CurationConfig:
        unknown = [f"{key}: {name!r}" for key, name in self.environments_used().items()
                   if name not in self.envs]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} is not in envs (has {sorted(self.envs)}); add it there or "
                             "use \"main\"")
        return self

    def environments_used(self) -> dict[str, str]:
        """Config key of each enabled model stage that runs outside the main environment -> environment name."""
        used = {}
        if self.filters.aesthetic.enabled:
            used["filters.aesthetic.environment"] = self.filters.aesthetic.environment
        if self.speech.asr.enabled and self.speech.asr.backend == "whisperx":
            used["speech.asr.environment"] = self.speech.asr.environment
        return {key: name for key, name in used.items() if name != "main"}

    def environment(self, name: str) -> dict[str, str | list[str]]:
        """Environment `name` as plain settings for ovi_pl.envs, paths resolved against the repository root."""
        return resolved(self.envs[name].model_dump(mode="json", exclude_none=True))


class ConfigError(ValueError):
    """A config file that cannot run; the message names every bad key and how to fix it."""


def read_config(path: str | Path, overrides: dict | None = None) -> CurationConfig:
    """Read a YAML config and validate its keys and values; `overrides` maps dotted keys to values.

    Checks that need the file system or the stage modules (model files, the inputs manifest) are
    `curation.preflight.load_config`'s, which is what commands call.
    """
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
        return CurationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid curation config:\n  " + "\n  ".join(_format(e) for e in exc.errors())) from exc


def _format(error: dict) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against configs/curation.yaml)"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{key}: {msg} (got {error.get('input')!r})" if error["type"] != "missing" else f"{key}: required"
