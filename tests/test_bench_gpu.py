"""bench/gpu.py's smoke mode: every section of the GPU script runs on CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import math
import sys

from conftest import ROOT


def test_smoke_mode_prints_every_section(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    bench.main(["--smoke"])

    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split(" | ")
    rows = [dict(zip(header, line.split(" | "), strict=True)) for line in lines[3:] if " | " in line]
    assert {row["section"] for row in rows} == {"attention", "agreement", "fsdp2"}
    measured = [row for row in rows if row["section"] == "attention" and row["ms"] != "-"]
    assert measured and all(float(row["ms"]) > 0 for row in measured)  # at least one SDPA kernel ran on CPU
    skipped = [row for row in rows if row["section"] == "attention" and row["ms"] == "-"]
    assert all(row["note"].startswith("unsupported:") for row in skipped)

    errors = [float(row["note"].split()[-1]) for row in rows if row["section"] == "agreement"]
    assert len(errors) == 2 and all(0 < e < 0.05 for e in errors)  # bf16 really ran, close to float32
    (fsdp,) = [row for row in rows if row["section"] == "fsdp2"]
    losses = [float(v) for v in fsdp["note"].removeprefix("loss ").split()]
    assert all(math.isfinite(v) for v in losses) and losses[0] != losses[1]  # AdamW stepped the sharded model
