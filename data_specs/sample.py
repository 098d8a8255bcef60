"""Typed models of a shard sample's `.json` member (schema version SCHEMA_VERSION).

Two kinds of sample share one base: `audio_video` clips for twin-tower training and `audio_only`
clips for audio-tower pretraining. `parse_sample_meta` is the one entry point readers should use.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from .captions import check_caption_tags
from .latents import LATENT_DTYPES, LATENT_SPECS, expected_video_latent_grid
from .version import SCHEMA_VERSION, UnsupportedSchemaVersionError, check_schema_version

VIDEO_FPS = 24
AUDIO_SAMPLE_RATE = 16000
AUDIO_CHANNELS = 1

# Dots are out because WebDataset splits a member name at its first dot into key and extension;
# slashes and spaces are out so a key is also a safe file name.
KEY_PATTERN = r"^[A-Za-z0-9_-]+$"
LATENT_NAME_PATTERN = r"^[a-z0-9_]+\.npy$"
SCORE_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

# Scores curation records (each written by a curation stage); any other snake_case name is allowed too.
WELL_KNOWN_SCORES: dict[str, str] = {
    "mean_volume_db": "mean audio volume in dB (ffmpeg volumedetect); the paper keeps >= -60",
    "motion": "mean optical-flow magnitude in pixels per frame; static clips are dropped",
    "aesthetic": "LAION aesthetic predictor on CLIP ViT-L/14 embeddings, about 1-10",
    "syncnet_offset": "SyncNet audio-video offset in video frames; the paper keeps |offset| <= 3",
    "syncnet_confidence": "SyncNet confidence, median(dist) - min(dist); the paper keeps > 1.5",
    "area": "source frame area in pixels (width * height); the paper keeps >= 720 * 720",
    "num_faces": "number of face tracks found in the clip (SyncNet or sync stage), 0 for none; recorded, "
                 "not filtered on (SPEC.md: how to balance the data by it)",
}

# One video frame: container and encoder rounding must not fail a clip.
_DURATION_TOLERANCE_S = 1.0 / VIDEO_FPS

_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Positive = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceInfo(_Strict):
    """Where the clip was cut from; start/end are seconds in the source."""

    uri: str = Field(min_length=1, description="source video or audio file, URL or dataset id")
    start_s: _Seconds
    end_s: _Seconds
    fps: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(None, description="source frame rate")
    width: _Positive | None = None
    height: _Positive | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> SourceInfo:
        if self.end_s <= self.start_s:
            raise ValueError(f"source.end_s ({self.end_s}) must be greater than source.start_s ({self.start_s})")
        return self


class VideoInfo(_Strict):
    """The `.mp4` member's video stream."""

    fps: Literal[24]
    num_frames: _Positive = Field(description="frames in the clip; training clips are 121 (5.04 s)")
    width: _Positive
    height: _Positive


class AudioInfo(_Strict):
    """The audio the trainer gets: the `.flac`/`.wav` member, else the mp4's track resampled."""

    sample_rate: Literal[16000]
    channels: Literal[1]


class AudioVideoMedia(_Strict):
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    video: VideoInfo
    audio: AudioInfo

    @model_validator(mode="after")
    def _duration_matches_frames(self) -> AudioVideoMedia:
        expected = self.video.num_frames / self.video.fps
        if abs(self.duration_s - expected) > _DURATION_TOLERANCE_S:
            raise ValueError(f"media.duration_s {self.duration_s} does not match video.num_frames / fps = "
                             f"{expected:.4f} s (tolerance one frame)")
        return self


class AudioOnlyMedia(_Strict):
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    audio: AudioInfo


class Word(_Strict):
    word: str = Field(min_length=1)
    start_s: _Seconds = Field(description="seconds from the clip start")
    end_s: _Seconds
    speaker: str | None = None
    score: Annotated[float, Field(allow_inf_nan=False)] | None = Field(None, description="alignment confidence")


class Segment(_Strict):
    text: str
    start_s: _Seconds = Field(description="seconds from the clip start")
    end_s: _Seconds
    speaker: str | None = None


class Transcript(_Strict):
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$", description="ISO 639 code, e.g. 'en'")
    words: list[Word] = []
    segments: list[Segment] = []

    @model_validator(mode="after")
    def _times_ordered(self) -> Transcript:
        for what, items in (("words", self.words), ("segments", self.segments)):
            for i, item in enumerate(items):
                if item.end_s < item.start_s:
                    raise ValueError(f"transcript.{what}[{i}] ends ({item.end_s}) before it starts ({item.start_s})")
                if i and item.start_s < items[i - 1].start_s:
                    raise ValueError(f"transcript.{what}[{i}] starts before transcript.{what}[{i - 1}]; "
                                     "sort them by start_s")
        return self


class LatentMember(_Strict):
    """A `<key>.<name>` member holding a numpy array saved with numpy.save."""

    name: str = Field(pattern=LATENT_NAME_PATTERN, description="member extension, e.g. 'video_latents.npy'")
    dtype: Literal[LATENT_DTYPES]  # type: ignore[valid-type]
    shape: list[_Positive] = Field(min_length=1)

    @model_validator(mode="after")
    def _fits_known_spec(self) -> LatentMember:
        spec = LATENT_SPECS.get(self.name)
        problems = spec.problems(self.dtype, tuple(self.shape)) if spec else []
        if problems:
            raise ValueError("; ".join(problems))
        return self


class _SampleBase(_Strict):
    schema_version: str = Field(pattern=r"^1\.\d+$",
                                description="MAJOR.MINOR of the schema the sample was written with")
    key: str = Field(pattern=KEY_PATTERN, max_length=200,
                     description="WebDataset key: the member names' prefix; letters, digits, '_' and '-', no dots")
    source: SourceInfo
    caption: str = Field(description="visual description with <S>..<E> speech, ending in "
                                     "<AUDCAP>..<ENDAUDCAP> or 'Audio: ..'")
    transcript: Transcript | None = None
    scores: dict[Annotated[str, Field(pattern=SCORE_NAME_PATTERN)],
                 Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict, description="named filter scores; well-known names in data_specs.WELL_KNOWN_SCORES")
    latents: list[LatentMember] = Field(default_factory=list, description="the .npy members present")

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data: Any) -> Any:
        # Checked before the fields so an old reader says "upgrade" rather than listing unknown fields.
        if isinstance(data, dict) and "schema_version" in data:
            check_schema_version(data["schema_version"])
        return data

    @field_validator("caption")
    @classmethod
    def _caption_tags(cls, caption: str) -> str:
        problems = check_caption_tags(caption)
        if problems:
            raise ValueError("bad caption tags: " + "; ".join(problems))
        return caption

    @model_validator(mode="after")
    def _consistent(self) -> _SampleBase:
        names = [m.name for m in self.latents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"latents lists {dupes} more than once")
        if self.transcript is not None:
            duration = self.media.duration_s  # type: ignore[attr-defined]  # every subclass defines media
            limit = duration + _DURATION_TOLERANCE_S
            late = [w for w in self.transcript.words if w.end_s > limit]
            if late:
                raise ValueError(f"transcript word {late[0].word!r} ends at {late[0].end_s} s, after the clip "
                                 f"({duration} s); word times are seconds from the clip start")
        return self

    def latent(self, name: str) -> LatentMember | None:
        return next((m for m in self.latents if m.name == name), None)


class AudioVideoSample(_SampleBase):
    """A clip with `.mp4` (and optionally `.flac`/`.wav`) for twin-tower training."""

    kind: Literal["audio_video"]
    media: AudioVideoMedia

    @model_validator(mode="after")
    def _video_latents_match_clip(self) -> AudioVideoSample:
        member = self.latent("video_latents.npy")
        if member is None:
            return self
        video = self.media.video
        grid = expected_video_latent_grid(video.num_frames, video.height, video.width)
        if grid is None:
            raise ValueError(f"video_latents.npy needs width and height divisible by 16, the clip is "
                             f"{video.width}x{video.height}")
        if tuple(member.shape[1:]) != grid:
            raise ValueError(f"video_latents.npy shape {member.shape} does not fit a {video.num_frames}-frame "
                             f"{video.width}x{video.height} clip: expected [48, {grid[0]}, {grid[1]}, {grid[2]}]")
        return self


class AudioOnlySample(_SampleBase):
    """A speech or sound clip with `.flac` or `.wav` and no `.mp4`, for audio-tower pretraining."""

    kind: Literal["audio_only"]
    media: AudioOnlyMedia


SampleMeta = Annotated[Union[AudioVideoSample, AudioOnlySample], Field(discriminator="kind")]
SAMPLE_META_ADAPTER: TypeAdapter[AudioVideoSample | AudioOnlySample] = TypeAdapter(SampleMeta)
SAMPLE_KINDS: tuple[str, ...] = ("audio_video", "audio_only")


class SampleMetaError(ValueError):
    """A `.json` member that is not a valid sample; `problems` lists one line per failure."""

    def __init__(self, problems: list[str], source: str = "sample json"):
        self.problems = problems
        super().__init__(f"{source} is not a valid schema {SCHEMA_VERSION} sample:\n  " + "\n  ".join(problems))


def parse_sample_meta(data: bytes | str | dict[str, Any], source: str = "sample json") -> AudioVideoSample | AudioOnlySample:
    """Parse and validate one sample's `.json` member; raise SampleMetaError naming every problem."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SampleMetaError([f"not valid UTF-8 JSON: {exc}"], source) from exc
    if not isinstance(data, dict):
        raise SampleMetaError([f"top level is {type(data).__name__}, expected an object"], source)
    if "schema_version" not in data:
        raise SampleMetaError([f"schema_version is missing; write \"schema_version\": \"{SCHEMA_VERSION}\""], source)
    try:
        check_schema_version(data["schema_version"])
        return SAMPLE_META_ADAPTER.validate_python(data)
    except UnsupportedSchemaVersionError as exc:
        raise SampleMetaError([str(exc)], source) from exc
    except ValidationError as exc:
        raise SampleMetaError([_format_error(e) for e in exc.errors()], source) from exc


def _format_error(error: Any) -> str:
    loc = list(error["loc"])
    if loc and loc[0] in SAMPLE_KINDS:  # pydantic prefixes the union member's tag; the json has no such level
        loc = loc[1:]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = ["kind"]
    loc = ".".join(str(p) for p in loc) or "(top level)"
    msg = re.sub(r"^Value error, ", "", error["msg"])
    return f"{loc}: {msg}"
