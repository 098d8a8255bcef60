"""Named Python environments for work whose libraries do not install beside the main ones (open-clip,
whisperx, pyannote pin an older torch): how Ray starts a worker in one, and whether it is locked to the
driver.

An environment is a plain mapping with exactly one of:
- `python`: an interpreter that exists at this path on every node (Ray's `py_executable`);
- `pip` or `uv`: a list of pinned requirements Ray installs on each node, over the driver's packages;
- `requirements`: a pinned requirements file Ray installs with pip on each node;
- `image_uri`: a container image Ray runs the worker in.
Ray moves Arrow blocks and cloudpickled objects between the driver and these workers, so ray, pyarrow,
numpy and cloudpickle must be the driver's exact versions on both sides (`lock_problems`). Curation's model
stages and evaluation's CLIP scorer both reach their environment this way.
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# What crosses between the driver and a worker of another environment: Ray's own protocol, Arrow
# blocks, the numpy arrays inside them, and the pickled functions and rows.
SHARED_PACKAGES = ("ray", "pyarrow", "numpy", "cloudpickle")
KINDS = ("python", "pip", "uv", "requirements", "image_uri")
REPO_ROOT = Path(__file__).resolve().parents[1]
# Where model work runs unless a config names another environment: what `make models-env` builds.
DEFAULT_ENVS: dict[str, dict[str, Any]] = {"models": {"python": ".venv-models/bin/python"}}


def runtime_env(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray runtime_env that starts a worker in the environment `spec` describes."""
    kind = _kind(spec)
    value = spec[kind]
    if kind == "python":
        return {"py_executable": str(value)}
    if kind in ("pip", "uv"):
        return {kind: {"packages": [str(v) for v in value]}}
    if kind == "requirements":
        return {"pip": str(value)}  # Ray reads the file on the driver and installs it on each node
    return {"image_uri": str(value)}


def resolved(spec: Mapping[str, Any], root: Path = REPO_ROOT) -> dict[str, Any]:
    """`spec` with a relative interpreter or requirements path made absolute against `root` (the repository
    root: where `ray job submit --working-dir .` runs the driver, and where `make models-env` builds)."""
    out = dict(spec)
    for key in ("python", "requirements"):
        if out.get(key) is not None and not Path(out[key]).is_absolute():
            out[key] = str(root / out[key])
    return out


def driver_versions(packages: tuple[str, ...] = SHARED_PACKAGES) -> dict[str, str]:
    """Versions of `packages` installed in this interpreter."""
    return {name: importlib.metadata.version(name) for name in packages}


def interpreter_versions(python: str | Path, packages: tuple[str, ...] = SHARED_PACKAGES,
                         timeout_s: float = 60.0) -> dict[str, str | None]:
    """Versions of `packages` in the interpreter `python` (None: not installed), read from its metadata
    without importing them."""
    script = ("import importlib.metadata as m, json, sys\n"
              "def v(n):\n    try:\n        return m.version(n)\n"
              "    except m.PackageNotFoundError:\n        return None\n"
              "print(json.dumps({n: v(n) for n in sys.argv[1:]}))")
    result = subprocess.run([str(python), "-I", "-c", script, *packages], capture_output=True, text=True,
                            timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"{python} could not report its package versions: {result.stderr[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def lock_problems(key: str, spec: Mapping[str, Any], fix: str) -> list[str]:
    """Why the environment at config key `key` is not locked to the driver's shared packages (empty when it
    is): each problem names the package, both versions and `fix` (what to rebuild or pin).

    An interpreter is asked for its versions; a pip/uv list or requirements file must pin any shared package
    it names to the driver's exact version (those it leaves out come from the driver's environment). A
    container image is checked by Ray when the worker starts.
    """
    kind = _kind(spec, key)
    want = driver_versions()
    if kind == "python":
        python = Path(spec["python"])
        if not python.is_file():
            return [f"{key}.python: {python} does not exist; {fix}"]
        have = interpreter_versions(python)
        return [f"{key}: {name} is {have[name] or 'not installed'} in {python} but {want[name]} in the driver "
                f"({sys.executable}); {fix}"
                for name in SHARED_PACKAGES if have[name] != want[name]]
    if kind == "image_uri":
        return []
    if kind == "requirements":
        path = Path(spec["requirements"])
        if not path.is_file():
            return [f"{key}.requirements: {path} does not exist"]
        lines = path.read_text().splitlines()
    else:
        lines = [str(v) for v in spec[kind]]
    problems = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"{key}.{kind}: {line!r} is not a requirement ({exc})")
            continue
        name = canonicalize_name(req.name)
        if name in want and str(req.specifier) != f"=={want[name]}":
            problems.append(f"{key}.{kind}: {line!r} must pin {name}=={want[name]}, the driver's version; {fix}")
    return problems


def _kind(spec: Mapping[str, Any], key: str = "environment") -> str:
    unknown = sorted(set(spec) - set(KINDS))
    given = [k for k in KINDS if spec.get(k) is not None]
    if unknown or len(given) != 1:
        raise ValueError(f"{key} needs exactly one of {', '.join(KINDS)}; got {given or 'none'}"
                         + (f" and unknown keys {unknown}" if unknown else ""))
    return given[0]
