"""Validating shards: every sample's members, json and payloads against the schema."""
from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .members import (AUDIO_EXTENSIONS, NPY_SUFFIX, PICKLE_EXTENSIONS, check_member_set, dotted_key_suffixes,
                      is_pickle_extension)
from .payloads import check_audio, check_mp4, check_npy
from .sample import KEY_PATTERN, AudioOnlySample, AudioVideoSample, SampleMetaError, parse_sample_meta
from .shards import RawSample, find_shards, iter_shard_samples
from .version import SCHEMA_VERSION


@dataclass
class BadSample:
    shard: str
    key: str
    problems: list[str]


@dataclass
class ShardError:
    shard: str
    problem: str


@dataclass
class ValidationReport:
    shards: list[str] = field(default_factory=list)
    num_samples: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # good samples per kind
    bad_samples: list[BadSample] = field(default_factory=list)
    shard_errors: list[ShardError] = field(default_factory=list)

    @property
    def num_bad(self) -> int:
        return len(self.bad_samples)

    @property
    def ok(self) -> bool:
        return not self.bad_samples and not self.shard_errors

    def bad_keys(self) -> list[str]:
        return [b.key for b in self.bad_samples]

    def summary(self) -> str:
        text = f"{self.num_samples} samples in {len(self.shards)} shards, {self.num_bad} bad"
        if self.shard_errors:
            text += f", {len(self.shard_errors)} shard errors"
        return text

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "ok": self.ok, "num_bad": self.num_bad, **asdict(self)}


def validate_sample(sample: RawSample) -> list[str]:
    """Every problem with one sample; empty if it meets the schema."""
    return _validate(sample)[0]


def _validate(sample: RawSample) -> tuple[list[str], AudioVideoSample | AudioOnlySample | None]:
    problems = list(sample.problems)
    if not re.fullmatch(KEY_PATTERN, sample.key):
        problems.append(f"key {sample.key!r} must match {KEY_PATTERN} (no dots, slashes or spaces)")
    pickled = sorted(ext for ext in sample.members if is_pickle_extension(ext))
    for ext in pickled:
        problems.append(f"pickle member .{ext} refused: {'/'.join('.' + e for e in sorted(PICKLE_EXTENSIONS))} "
                        "members load through pickle, which can run code; store arrays as .npy (numpy.save) "
                        "and declare them under 'latents'")
    dotted = dotted_key_suffixes(sample.members)
    if dotted:
        # Every other check would only report the consequences (a missing .json, odd extensions).
        names = ", ".join(repr(f"{sample.key}.{d}") for d in dotted)
        problems.append(f"key {names} contains a dot: WebDataset splits member names at the first dot, so its "
                        f"members read as key {sample.key!r} with extensions {sorted(sample.members)}; "
                        "use keys without dots")
        return problems, None
    meta = None
    if "json" not in sample.members:
        problems.append("missing member .json (every sample needs its metadata)")
    else:
        try:
            meta = parse_sample_meta(sample.members["json"], source=f"{sample.key}.json")
        except SampleMetaError as exc:
            problems += [f"json: {p}" for p in exc.problems]
        else:
            if meta.key != sample.key:
                problems.append(f"json key {meta.key!r} differs from the tar key {sample.key!r}")

    extensions = set(sample.members) - set(pickled)
    kind = meta.kind if meta is not None else ("audio_video" if "mp4" in extensions else "audio_only")
    npy_present = {ext for ext in extensions if ext.endswith(NPY_SUFFIX)}
    declared = {m.name for m in meta.latents} if meta is not None else npy_present
    member_problems = check_member_set(kind, extensions, declared)
    if meta is None:  # the json failed: say which rules the members were checked against
        member_problems = [f"{p} (checked as {kind!r}, inferred from the members)" for p in member_problems
                           if not p.startswith("missing member .json")]
    problems += member_problems
    problems += _check_payloads(sample, meta, extensions)
    return problems, meta


def _check_payloads(sample: RawSample, meta: AudioVideoSample | AudioOnlySample | None, extensions: set[str]) -> list[str]:
    problems: list[str] = []
    for ext in sorted(e for e in extensions if e.endswith(NPY_SUFFIX)):
        problems += check_npy(ext, sample.members[ext], meta.latent(ext) if meta is not None else None)
    audio_exts = [e for e in AUDIO_EXTENSIONS if e in extensions]
    media = meta.media if meta is not None else None
    if "mp4" in extensions:
        video = media.video if isinstance(meta, AudioVideoSample) else None
        problems += check_mp4(sample.members["mp4"], video, need_audio_track=not audio_exts)
    for ext in audio_exts:
        problems += check_audio(ext, sample.members[ext], media.audio if media else None,
                                media.duration_s if media else None)
    return problems


def validate_shards(paths: Iterable[str | Path]) -> ValidationReport:
    """Validate every sample of every shard in `paths` (tar files, or directories searched for *.tar).

    Raises FileNotFoundError / ValueError when the paths name no shards at all.
    """
    report = ValidationReport()
    first_seen: dict[str, str] = {}  # key -> shard, to catch keys that repeat
    for shard in find_shards(paths):
        report.shards.append(str(shard))
        notes: list[str] = []
        try:
            for sample in iter_shard_samples(shard, notes):
                report.num_samples += 1
                problems, meta = _validate(sample)
                if sample.key in first_seen:
                    where = first_seen[sample.key]
                    problems.insert(0, "key appears again after other samples: members of a sample must be "
                                       "adjacent in the tar, or WebDataset yields two samples" if where == str(shard)
                                    else f"key also used in shard {where}; keys must be unique across shards")
                first_seen.setdefault(sample.key, str(shard))
                if problems:
                    report.bad_samples.append(BadSample(str(shard), sample.key, problems))
                elif meta is not None:
                    report.kinds[meta.kind] = report.kinds.get(meta.kind, 0) + 1
        except (tarfile.TarError, OSError, EOFError) as exc:
            notes.append(f"cannot read the tar ({type(exc).__name__}: {exc}); samples after this point were not checked")
        report.shard_errors += [ShardError(str(shard), note) for note in notes]
    return report
