"""Every module of the three packages imports in a fresh interpreter, and imports run one way:
data_specs <- ovi_pl <- curation, with ovi_pl.media a leaf that any of them may use.

The direction is checked on the source with `ast`, every import statement included (those inside
functions too, which an import test never runs), so a reverse import cannot hide behind laziness.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_specs", "ovi_pl", "curation")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (their `__main__` modules left out)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_modules(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file, relative ones resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                out.append((node.lineno, target))
            else:  # from . import x, y: each name may be a module
                out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (modules the rule applies to, the packages they must not import, why)
RULES = [
    (lambda m: within(m, "data_specs"), ("ovi_pl", "curation"), "data_specs is the lowest layer"),
    (lambda m: within(m, "ovi_pl"), ("curation",), "ovi_pl must not import curation"),
    (lambda m: m == "curation.config", ("curation",), "curation/config.py imports nothing from curation"),
    (lambda m: within(m, "ovi_pl.media"), ("ovi_pl", "data_specs", "curation"),
     "ovi_pl.media is a leaf (it imports only its own modules)"),
]


def test_imports_run_one_way() -> None:
    problems = []
    for module, path in module_files().items():
        for applies, forbidden, why in RULES:
            if not applies(module):
                continue
            for line, target in imported_modules(module, path):
                if within(module, "ovi_pl.media") and within(target, "ovi_pl.media"):
                    continue
                if any(within(target, f) for f in forbidden):
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({why})")
    assert not problems, "\n".join(problems)


def _import_in_fresh_process(modules: list[str], report_loaded: tuple[str, ...] = ()) -> dict:
    """Import `modules` one after another in a new interpreter; {module: error} and which of
    `report_loaded` ended up in sys.modules."""
    script = f"""
import importlib, json, sys, traceback
failed = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except BaseException as exc:  # SystemExit too: a module must not exit on import
        failed[name] = traceback.format_exception_only(type(exc), exc)[-1].strip()
loaded = [m for m in {list(report_loaded)!r} if m in sys.modules]
print("RESULT" + json.dumps({{"failed": failed, "loaded": loaded}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, f"the import process failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULT"))


def test_every_module_imports_in_a_fresh_process() -> None:
    modules = sorted(module_files())
    assert len(modules) > 50 and "ovi_pl.media.frames" in modules and "curation.config" in modules
    failed = _import_in_fresh_process(modules)["failed"]
    assert not failed, "modules that do not import:\n" + "\n".join(f"{m}: {e}" for m, e in failed.items())


@pytest.mark.parametrize("module", ["ovi_pl.media.tools", "ovi_pl.media.frames", "ovi_pl.media.audio"])
def test_the_media_layer_imports_light(module: str) -> None:
    # These run in the models environment too (aesthetic stage, workers), where the project is installed
    # without its dependencies: no torch, lightning or pydantic at import time.
    result = _import_in_fresh_process([module], report_loaded=("torch", "lightning", "pydantic", "av", "cv2"))
    assert not result["failed"] and result["loaded"] == [], result
