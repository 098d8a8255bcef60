"""The unit of a curation pipeline: a small class with its resources, a setup and a process-batch method.

A pipeline is a list of stages built from the config and run on Ray Data. A stage sees batches
of rows (one dict per clip or input file) and returns rows: the same ones updated, fewer, or
more (a cutting stage turns one video into many clips). A row that a stage rejects is not
dropped: it is returned with `status="rejected"`, the stage name and the reason, so the run's
manifest accounts for every clip; later stages pass rejected rows through untouched.
A row on which a stage raises is not lost either: the framework (`curation/runner.py`) turns the
exception into a `status="quarantined"` record naming the stage and the error, and retries the
rest of the batch row by row so one corrupt input cannot take its batch mates down with it.

Scores live in `row["scores"]` (name -> float), the same names the shard json's `scores` uses.
Each stage's time is recorded on the rows it returns, in `row["stage_time"]` (see `Stage.__init_subclass__`).

CPU stages run as Ray tasks; stages with `Resources.actors` set run as an actor pool
(`ActorPoolStrategy`), which is how model stages keep their weights loaded between batches.
`Resources.environment` names the environment (config `envs`, README "Environments") its workers run in;
outside "main" the stage is rebuilt in the worker from its plain settings (`curation/runner.py`).
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

Row = dict[str, Any]

KEPT = "kept"
REJECTED = "rejected"
QUARANTINED = "quarantined"
# Row field: [stage name, worker seconds, rows in] per stage the row went through, in pipeline order (a list,
# so the order survives JSON markers written with sorted keys): this row's share of the batches that stage ran.
STAGE_TIME = "stage_time"


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs from Ray."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None
    # Size of the actor pool for stages that hold a model; None runs the stage as stateless tasks.
    actors: int | None = None
    # "main" (the driver's environment) or a name in the config's `envs` (ovi_pl/envs.py).
    environment: str = "main"


class Stage(ABC):
    """Subclasses set `name`, `resources` and `batch_size`, and implement `process_batch`."""

    name: ClassVar[str]
    resources: ClassVar[Resources] = Resources()
    batch_size: ClassVar[int] = 1
    # True for stages that turn one row into many (cutting): the runner re-blocks their output.
    fans_out: ClassVar[bool] = False
    # Audio-only segment rows (record_type "audio_clip") pass around stages that work on video;
    # the stages that also serve them (transcription, captions, packaging) set this.
    takes_audio_only: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Timing here rather than in the runner: every way a stage is run (Ray task, actor, the driver's
        # discovery, a test calling process_batch) records it, at the cost of one clock read a batch.
        super().__init_subclass__(**kwargs)
        if "process_batch" in cls.__dict__:
            cls.process_batch = _timed(cls.__dict__["process_batch"])  # type: ignore[method-assign]

    def setup(self) -> None:
        """Load models or open resources; runs once per worker before its first batch."""

    @abstractmethod
    def process_batch(self, rows: list[Row]) -> list[Row]:
        """Process the rows still marked kept; the pipeline passes rejected rows around the stage."""

    def reject(self, row: Row, reason: str, detail: str = "", **scores: float) -> Row:
        """Mark `row` rejected by this stage, keeping its scores for the manifest.

        `reason` is a short snake_case code the report counts by; `detail` says what was found
        and what the threshold was, for a human reading the manifest.
        """
        return {**row, "status": REJECTED, "rejected_by": self.name, "reason": reason, "detail": detail,
                "scores": {**row.get("scores", {}), **scores}}

    @staticmethod
    def with_scores(row: Row, **scores: float) -> Row:
        """`row` with scores added (scores are recorded for kept and rejected rows alike)."""
        return {**row, "scores": {**row.get("scores", {}), **scores}}

    def describe(self) -> str:
        """One line for the run log: the stage and where it runs."""
        r = self.resources
        where = f"actor pool of {r.actors}" if r.actors else "tasks"
        env = f", env {r.environment}" if r.environment != "main" else ""
        return f"{self.name}: {where}, {r.cpus:g} cpu{f', {r.gpus:g} gpu' if r.gpus else ''}{env}, batch {self.batch_size}"


def _timed(process_batch: Callable[[Stage, list[Row]], list[Row]]) -> Callable[[Stage, list[Row]], list[Row]]:
    """`process_batch` that adds the batch's time to each row it returns, shared out so that summing
    `stage_time[name]` over a run's records gives the stage's worker seconds and the rows it was given.

    A fan-out stage splits one row into several: the shares its input carried from earlier stages are
    divided among the rows of the same input, so those earlier stages are not counted once per clip.
    """
    @functools.wraps(process_batch)
    def timed(self: Stage, rows: list[Row]) -> list[Row]:
        start = time.perf_counter()
        out = process_batch(self, rows)
        if not (isinstance(out, list) and out and all(isinstance(r, dict) for r in out)):
            return out  # the runner reports what a stage returned wrongly
        seconds, weight = (time.perf_counter() - start) / len(out), len(rows) / len(out)
        siblings = Counter(r.get("input_id") for r in out) if self.fans_out else None
        timed_rows = []
        for row in out:
            inherited = [entry for entry in row.get(STAGE_TIME) or () if entry[0] != self.name]
            if siblings:
                k = siblings[row.get("input_id")]
                inherited = [[name, s / k, n / k] for name, s, n in inherited]
            timed_rows.append({**row, STAGE_TIME: [*inherited, [self.name, seconds, weight]]})
        return timed_rows

    return timed
