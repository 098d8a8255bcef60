"""The versioned schema of a shard sample, shared by curation and training (see the data-specs issue).

See SPEC.md next to this file for the human-readable version.
"""
from .captions import caption_style, check_caption_tags, speech_spans
from .latents import LATENT_SPECS, LatentSpec
from .members import MEMBER_RULES, PICKLE_EXTENSIONS, MemberRule, check_member_set, split_member_name
from .sample import (WELL_KNOWN_SCORES, AudioInfo, AudioOnlyMedia, AudioOnlySample, AudioVideoMedia,
                     AudioVideoSample, LatentMember, SampleMeta, SampleMetaError, Segment, SourceInfo, Transcript,
                     VideoInfo, Word, parse_sample_meta)
from .schema import SCHEMA_FILE, render_schema, sample_json_schema
from .shards import RawSample, find_shards, iter_shard_samples
from .validate import BadSample, ShardError, ValidationReport, validate_sample, validate_shards
from .version import SCHEMA_VERSION, UnsupportedSchemaVersionError, check_schema_version

__all__ = [
    "SCHEMA_VERSION", "UnsupportedSchemaVersionError", "check_schema_version",
    "caption_style", "check_caption_tags", "speech_spans",
    "LATENT_SPECS", "LatentSpec", "MEMBER_RULES", "PICKLE_EXTENSIONS", "MemberRule", "check_member_set",
    "split_member_name",
    "WELL_KNOWN_SCORES", "AudioInfo", "AudioOnlyMedia", "AudioOnlySample", "AudioVideoMedia", "AudioVideoSample",
    "LatentMember", "SampleMeta", "SampleMetaError", "Segment", "SourceInfo", "Transcript", "VideoInfo", "Word",
    "parse_sample_meta",
    "SCHEMA_FILE", "render_schema", "sample_json_schema",
    "RawSample", "find_shards", "iter_shard_samples",
    "BadSample", "ShardError", "ValidationReport", "validate_sample", "validate_shards",
]
