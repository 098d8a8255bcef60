"""Which tar members a sample may and must have, as data, and how member names split into key and extension."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

AUDIO_EXTENSIONS: tuple[str, ...] = ("flac", "wav")
# Formats whose loaders unpickle (webdataset decodes .pyd/.pickle with pickle.loads, .pth/.pt with
# torch.load): a shard is data from the network, and unpickling it runs arbitrary code.
PICKLE_EXTENSIONS: frozenset[str] = frozenset({"pth", "pt", "pkl", "pickle", "pyd", "ckpt"})
NPY_SUFFIX = ".npy"

# WebDataset's own rule (webdataset.tariterators.base_plus_ext): the key is everything up to the
# first dot of the file name, the extension everything after it.
_MEMBER_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@dataclass(frozen=True)
class MemberRule:
    """Member extensions one kind of sample must, may and must not have.

    `audio` says whether exactly one of AUDIO_EXTENSIONS is required or at most one is allowed.
    `.npy` members are governed by the json's `latents` list, not by this rule.
    """

    required: tuple[str, ...]
    audio: str  # "required" or "optional"
    forbidden: tuple[str, ...] = ()

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(AUDIO_EXTENSIONS)


MEMBER_RULES: dict[str, MemberRule] = {
    "audio_video": MemberRule(required=("mp4", "json"), audio="optional"),
    "audio_only": MemberRule(required=("json",), audio="required", forbidden=("mp4",)),
}
FIXED_EXTENSIONS: frozenset[str] = frozenset().union(*(r.allowed for r in MEMBER_RULES.values()))


def split_member_name(name: str) -> tuple[str, str] | None:
    """(key, extension) of a tar member name the way WebDataset splits it; None if it has no dot."""
    match = _MEMBER_RE.match(name)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


def is_pickle_extension(ext: str) -> bool:
    return ext.rsplit(".", 1)[-1] in PICKLE_EXTENSIONS


def check_member_set(kind: str, extensions: set[str], declared_npy: set[str]) -> list[str]:
    """Problems with the set of member extensions of one sample of `kind`.

    `declared_npy` holds the `.npy` member names the json lists under `latents`.
    """
    rule = MEMBER_RULES[kind]
    problems: list[str] = []
    for ext in rule.required:
        if ext not in extensions:
            problems.append(f"missing member .{ext} (required for kind {kind!r})")
    for ext in rule.forbidden:
        if ext in extensions:
            problems.append(f"member .{ext} is not allowed for kind {kind!r}; use kind 'audio_video' for clips with video")
    audio = sorted(extensions & set(AUDIO_EXTENSIONS))
    if len(audio) > 1:
        problems.append(f"both {', '.join('.' + a for a in audio)} present; keep one audio member")
    elif not audio and rule.audio == "required":
        problems.append(f"missing audio member: kind {kind!r} needs one of {', '.join('.' + a for a in AUDIO_EXTENSIONS)}")
    for ext in sorted(extensions):
        if ext in FIXED_EXTENSIONS or is_pickle_extension(ext):
            continue  # pickle members are reported once, by the caller
        if ext.endswith(NPY_SUFFIX):
            if ext not in declared_npy:
                problems.append(f"member .{ext} is not declared in the json 'latents' list; add "
                                f"{{\"name\": \"{ext}\", \"dtype\": ..., \"shape\": [...]}} or drop the member")
        else:
            problems.append(f"unexpected member .{ext}; allowed: "
                            f"{', '.join('.' + e for e in sorted(FIXED_EXTENSIONS))} and declared .npy latents")
    for name in sorted(declared_npy - extensions):
        problems.append(f"missing member .{name} (declared in the json 'latents' list)")
    return problems


def dotted_key_suffixes(extensions: Iterable[str]) -> list[str]:
    """The parts a dotted key lost to the extension: "clip.v2.mp4" reads as key "clip", extension "v2.mp4"."""
    found = set()
    for ext in extensions:
        head, _, tail = ext.partition(".")
        if tail and (tail in FIXED_EXTENSIONS or tail.endswith(NPY_SUFFIX)) and not is_pickle_extension(ext):
            found.add(head)
    return sorted(found)
