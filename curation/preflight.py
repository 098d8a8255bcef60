"""Loading a curation config for a run: the schema (`curation.config`), then every check that needs the
file system or the stage modules, all reported together before Ray starts or any input is touched."""
from __future__ import annotations

from pathlib import Path

from data_specs import caption_style, check_caption_tags
from ovi_pl.envs import lock_problems

from .captioning.backends import local_model_problem as caption_model_problem
from .config import ConfigError, CurationConfig, read_config
from .keys import display_name
from .speech.asr import local_model_problems
from .stages.discover import manifest_entries
from .stages.speech import asr_settings


def load_config(path: str | Path, overrides: dict | None = None) -> CurationConfig:
    """The validated config at `path`; raises ConfigError naming every bad key, missing file and the fix."""
    config = read_config(path, overrides)
    problems = environment_problems(config)
    if problems:
        raise ConfigError(f"{path}: " + "\n  ".join(problems))
    return config


def environment_problems(config: CurationConfig) -> list[str]:
    """Checks that need the file system: cheap, and failing them later would waste the run so far."""
    problems = environment_lock_problems(config)

    def needs_files(key: str, paths: dict[str, Path | None]) -> None:
        for name, path in paths.items():
            if path is not None and not Path(path).is_file():
                problems.append(f"{key}.{name}: {path} does not exist")

    aesthetic = config.filters.aesthetic
    if aesthetic.enabled:
        needs_files("filters.aesthetic", {"clip_weights": aesthetic.clip_weights,
                                          "head_weights": aesthetic.head_weights})
    syncnet = config.filters.syncnet
    if syncnet.enabled:
        needs_files("filters.syncnet", {"weights": syncnet.weights, "detector_weights": syncnet.detector_weights})
    asr = config.speech.asr
    if asr.enabled:
        problems += local_model_problems(asr_settings(asr))
    captions = config.captions
    if captions.enabled and captions.backend == "local":
        problem = caption_model_problem(captions.local.model_dir or "")
        if problem:
            problems.append(problem)
    if config.inputs.manifest is not None and not config.inputs.manifest.is_file():
        problems.append(f"inputs.manifest: {config.inputs.manifest} does not exist")
    elif config.inputs.manifest is not None:
        problems += manifest_problems(config)
    return problems


def environment_lock_problems(config: CurationConfig) -> list[str]:
    """Each environment an enabled stage runs in must exist and share the driver's versions of the packages
    Ray moves between them (ovi_pl.envs.SHARED_PACKAGES); checked here, before Ray starts any worker."""
    problems = []
    for name in sorted(set(config.environments_used().values())):
        users = ", ".join(k.removesuffix(".environment") for k, v in config.environments_used().items() if v == name)
        fix = (f"needed by {users}; rebuild it from requirements/curation-models.txt (`make models-env`, which pins "
               f"them to the main environment's) or point envs.{name} at a locked environment")
        problems += lock_problems(f"envs.{name}", config.environment(name), fix)
    return problems


# A manifest of a million bad lines should not print a million lines; the count says how many there are.
_MAX_LISTED = 100


def manifest_problems(config: CurationConfig) -> list[str]:
    """Every manifest line that cannot be read, and every caption `package` would reject, with its problem.

    Captions get the checks `package` makes (data_specs' tag grammar, what `parse_sample_meta` runs) and
    must be in the style of `captions.style`. With `captions.enabled` the captioner replaces a caption that
    fails them instead, so then only unreadable lines are problems.
    """
    manifest = config.inputs.manifest
    specs, bad = manifest_entries(manifest)
    if not config.captions.enabled:
        for spec in specs:
            if spec.get("caption"):
                bad += [f"{spec['origin']}: {p}" for p in caption_problems(spec["caption"], config.captions.style)]
    if not bad:
        return []
    more = f"\n    ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return [f"inputs.manifest: {len(bad)} problems in {manifest}; fix these lines (captions: data_specs/SPEC.md):"
            + "".join(f"\n    {display_name(line)}" for line in bad[:_MAX_LISTED]) + more]


def caption_problems(caption: str, style: str) -> list[str]:
    """Why `package` would reject a manifest caption, or why it is not in the run's `captions.style`."""
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError:
        return ["caption is not valid UTF-8 text"]
    problems = check_caption_tags(caption)
    found = caption_style(caption)
    if not problems and found != style:
        want = "<AUDCAP>description<ENDAUDCAP>" if style == "audcap" else "'Audio: description'"
        problems.append(f"the audio description is in the {found} style, but captions.style is {style}: end the "
                        f"caption with {want}")
    return problems
