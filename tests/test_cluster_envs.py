"""Named model environments (ovi_pl/envs.py, config `envs`): the lock check at config load, and the model
stages run through Ray in `.venv-models` for real: Ray starts their actors on that interpreter, which
rebuilds each stage from its plain settings."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from conftest import SAMPLE_CLIPS, models_python

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
MODELS_PYTHON = models_python()
needs_models_env = pytest.mark.skipif(MODELS_PYTHON is None, reason="no .venv-models interpreter: run `make "
                                      "models-env` (or set OVI_PL_MODELS_PYTHON)")


def _load(tmp_path: Path, data: dict) -> object:
    from curation.preflight import load_config

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"inputs": {"paths": [str(tmp_path)]}, **data}))
    return load_config(path)


def _asr_in(env: str, tmp_path: Path) -> dict:
    (tmp_path / "whisper").mkdir(exist_ok=True)
    (tmp_path / "whisper" / "model.bin").write_bytes(b"")  # only its presence is checked at load
    return {"speech": {"asr": {"enabled": True, "backend": "whisperx", "model_dir": str(tmp_path / "whisper"),
                               "environment": env}}}


def test_environment_not_locked_to_the_driver_fails_at_config_load(tmp_path: Path) -> None:
    """A pip environment pinning another pyarrow, or naming numpy unpinned, and an interpreter without Ray
    (a bare venv) are refused before any work, naming the package, both versions and the fix."""
    from curation.config import ConfigError
    from ovi_pl.envs import driver_versions

    want = driver_versions()
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {**_asr_in("built", tmp_path),
                         "envs": {"built": {"pip": ["pyarrow==1.0.0", "numpy", "open-clip-torch==3.3.0"]}}})
    message = str(err.value)
    assert f"envs.built.pip: 'pyarrow==1.0.0' must pin pyarrow=={want['pyarrow']}" in message
    assert f"'numpy' must pin numpy=={want['numpy']}" in message
    assert "open-clip" not in message and "needed by speech.asr" in message

    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {**_asr_in("models", tmp_path), "envs": {"models": {"python": str(bare / "bin/python")}}})
    assert f"envs.models: ray is not installed in {bare / 'bin/python'} but {want['ray']} in the driver" \
        in str(err.value)
    assert "make models-env" in str(err.value)


def test_stage_naming_an_unknown_environment_is_a_config_error(tmp_path: Path) -> None:
    from curation.config import ConfigError

    with pytest.raises(ConfigError, match=r"speech\.asr\.environment: 'gpu' is not in envs \(has \['models'\]\)"):
        _load(tmp_path, _asr_in("gpu", tmp_path))


def test_environment_kinds_become_ray_runtime_envs(tmp_path: Path) -> None:
    from curation.config import ConfigError
    from ovi_pl.envs import runtime_env

    assert runtime_env({"python": "/opt/env/bin/python"}) == {"py_executable": "/opt/env/bin/python"}
    assert runtime_env({"uv": ["open-clip-torch==3.3.0"]}) == {"uv": {"packages": ["open-clip-torch==3.3.0"]}}
    assert runtime_env({"requirements": "requirements/curation-models.txt"}) == \
        {"pip": "requirements/curation-models.txt"}
    assert runtime_env({"image_uri": "ghcr.io/x/models:1"}) == {"image_uri": "ghcr.io/x/models:1"}
    with pytest.raises(ConfigError, match="envs.two.*exactly one of python, pip, uv, requirements, image_uri"):
        _load(tmp_path, {"envs": {"two": {"python": "/usr/bin/python3", "pip": ["x==1"]}}})


def test_models_requirements_pin_the_drivers_shared_packages() -> None:
    """`make models-env` builds from this file: it must lock what Ray moves across to the driver's versions."""
    from ovi_pl.envs import lock_problems

    assert lock_problems("envs.models", {"requirements": str(REPO / "requirements/curation-models.txt")},
                         "fix") == []


TINY_MODELS = """
import sys, torch
from pathlib import Path
from curation.stages.aesthetic import build_head
from speech_media import build_tiny_whisper
from tiny_open_clip import write_tiny_clip_768
root = Path(sys.argv[1])
write_tiny_clip_768(root)  # registered in the worker by filters.aesthetic.clip_model_config
torch.save(build_head().state_dict(), root / "head.pth")
build_tiny_whisper(root / "whisper_hf", root / "whisper_ct2")
"""


@needs_models_env
def test_aesthetic_and_whisperx_stages_run_through_ray_in_the_models_env(tmp_path: Path) -> None:
    """The two model stages as the pipeline runs them: actor pools that Ray starts on .venv-models' own
    interpreter (py_executable, no wrapper), built there from plain settings. open-clip and whisperx do not
    import in this interpreter, so a row scored and transcribed was processed in the other environment."""
    from curation.config import AestheticFilter, AsrConfig
    from curation.pipeline import stream_rows
    from curation.stages.aesthetic import AestheticFilterStage
    from curation.stages.speech import TranscribeStage
    from data_specs import Transcript
    from ovi_pl.envs import runtime_env

    for module in ("open_clip", "whisperx"):
        with pytest.raises(ImportError):
            __import__(module)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1"}
    built = subprocess.run([str(MODELS_PYTHON), "-c", TINY_MODELS, str(tmp_path)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    aesthetic = AestheticFilterStage(AestheticFilter(
        enabled=True, clip_model="tiny-clip-768", clip_model_config=tmp_path / "tiny-clip-768.json",
        clip_weights=tmp_path / "clip.pt", head_weights=tmp_path / "head.pth", num_frames=2, min_score=-1e9))
    asr = TranscribeStage(AsrConfig(enabled=True, backend="whisperx", model_dir=tmp_path / "whisper_ct2",
                                    beam_size=1, batch_size=2, language="en"))
    assert aesthetic.resources.environment == asr.resources.environment == "models"
    rows = [{"key": f"clip{i}", "status": "kept", "mp4_path": str(clip), "scores": {}}
            for i, clip in enumerate(SAMPLE_CLIPS[:2])]
    # 4 logical CPUs: the two actors hold one each and Ray Data's own tasks need the others.
    ray.init(address="local", num_cpus=4, include_dashboard=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    try:
        out = sorted(stream_rows(rows, [aesthetic, asr], {"models": runtime_env({"python": str(MODELS_PYTHON)})},
                                 stall_timeout_s=300), key=lambda r: r["key"])
    finally:
        ray.shutdown()
    assert [r["status"] for r in out] == ["kept", "kept"], [(r.get("error_type"), r.get("error")) for r in out]
    assert all(isinstance(r["scores"]["aesthetic"], float) for r in out)
    for row in out:
        transcript = Transcript.model_validate(row["transcript"])  # random weights: words are noise, form is not
        assert transcript.language == "en" and transcript.segments
