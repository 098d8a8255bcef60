"""Loading a curation config for a run: the schema (`curation.config`), then every check that needs the
file system or the stage modules, all reported together before Ray starts or any input is touched."""
from __future__ import annotations

from pathlib import Path

from .captioning.backends import local_model_problem as caption_model_problem
from .config import ConfigError, CurationConfig, read_config
from .speech.asr import local_model_problems
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
        problems += local_model_problems(asr_settings(asr))
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
