"""What an operator sees while a run goes: per-stage counts and rates, inputs finished with an ETA, and
which stages are stuck when nothing moves.

Ray Data fuses consecutive task stages into one operator, so its own progress lines say
"MapBatches(probe)->...->MapBatches(transcode)" and cannot tell the stages apart. Each stage
therefore reports its batches to one small actor (`StageCounters`, fire-and-forget calls); the
driver reads it every `output.progress_interval_s` for the progress line of the run log, and when
Ray Data's no-progress guard fires (`ray.stall_timeout_s`) to say where the rows are.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("curation")


@dataclass
class StageCount:
    rows_in: int = 0
    rows_out: int = 0
    kept_out: int = 0
    running: int = 0
    oldest_running_s: float = 0.0


class StageCounters:
    """Ray actor (`num_cpus=0`): batches started and finished per stage, reported by the stage workers."""

    def __init__(self) -> None:
        self.counts: dict[str, StageCount] = {}
        self.running: dict[str, tuple[str, float]] = {}  # batch id -> (stage, start time)

    def started(self, stage: str, batch_id: str) -> None:
        self.running[batch_id] = (stage, time.time())

    def finished(self, stage: str, batch_id: str, rows_in: int, rows_out: int, kept_out: int) -> None:
        self.running.pop(batch_id, None)
        count = self.counts.setdefault(stage, StageCount())
        count.rows_in += rows_in
        count.rows_out += rows_out
        count.kept_out += kept_out

    def snapshot(self) -> dict[str, StageCount]:
        now = time.time()
        out = {name: StageCount(c.rows_in, c.rows_out, c.kept_out) for name, c in self.counts.items()}
        for stage, start in self.running.values():
            count = out.setdefault(stage, StageCount())
            count.running += 1
            count.oldest_running_s = max(count.oldest_running_s, now - start)
        return out


def describe_stages(stage_names: list[str], counts: dict[str, StageCount], total_inputs: int,
                    elapsed_s: float) -> list[str]:
    """One phrase per stage: rows done and rate, batches running, rows waiting for it."""
    phrases = []
    upstream_out = total_inputs
    for name in stage_names:
        c = counts.get(name, StageCount())
        rate = f" ({c.rows_in / elapsed_s:.2f}/s)" if elapsed_s > 0 and c.rows_in else ""
        running = f", {c.running} running for up to {c.oldest_running_s:.0f} s" if c.running else ""
        # Rows the previous stage handed on that this one has not taken up; a running batch is counted as
        # one row (task stages take one a batch), hence "~".
        waiting = upstream_out - c.rows_in - c.running
        queued = f", ~{waiting} waiting" if waiting > 0 else ""
        phrases.append(f"{name} {c.rows_in} rows, {c.kept_out} kept{rate}{running}{queued}")
        upstream_out = c.rows_out
    return phrases


def stuck_stages(stage_names: list[str], counts: dict[str, StageCount], total_inputs: int) -> str:
    """The stages a stalled run is waiting on: those with a batch running, and those with rows waiting."""
    stuck = [p for p in describe_stages(stage_names, counts, total_inputs, 0.0) if "running" in p or "waiting" in p]
    return "; ".join(stuck) if stuck else "no stage has a batch running or rows waiting"


def eta(done: int, total: int, elapsed_s: float) -> str:
    if done == 0 or elapsed_s <= 0:
        return "ETA unknown"
    remaining = (total - done) * elapsed_s / done
    return f"ETA {time.strftime('%H:%M:%S', time.gmtime(remaining))}"


class ProgressReporter:
    """A thread that logs one progress line every `interval_s` seconds until stopped."""

    def __init__(self, interval_s: float, line: Callable[[], str]):
        self.interval_s = interval_s
        self.line = line
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="curation-progress", daemon=True)

    def __enter__(self) -> ProgressReporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                log.info(self.line())
            except Exception as exc:  # noqa: BLE001 - a progress line must never take the run down
                log.debug(f"progress line failed: {exc!r}")
