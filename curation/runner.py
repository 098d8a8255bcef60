"""Running stages: the pass-around/quarantine rule, and the Ray Data plumbing around it.

Rows travel through Ray Data as one binary column of pickled dicts. Rows of different stages
carry different fields (an input has a probe result, a clip has times and scores); as Arrow
columns they would need one schema unified across every block, which breaks the first time a
field is None in one block and a float in another. One opaque column keeps blocks trivially
compatible, and the dicts stay plain Python for the stages.
"""
from __future__ import annotations

import importlib
import pickle
import traceback
import uuid
from typing import Any, Callable

import pyarrow as pa

from .stage import KEPT, QUARANTINED, Row, Stage

ROW_COLUMN = "row"
_MAX_ERROR_CHARS = 2000


def encode_rows(rows: list[Row]) -> pa.Table:
    return pa.table({ROW_COLUMN: pa.array([pickle.dumps(r, protocol=5) for r in rows], type=pa.binary())})


def decode_rows(table: pa.Table) -> list[Row]:
    return [pickle.loads(b) for b in table.column(ROW_COLUMN).to_pylist()]


def quarantine(row: Row, stage: str, exc: BaseException) -> Row:
    """The record of a row on which `stage` raised: what failed and where, instead of a crash."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return {**row, "status": QUARANTINED, "rejected_by": stage, "reason": "error",
            "error_type": type(exc).__name__, "error": str(exc)[:_MAX_ERROR_CHARS], "detail": where}


def apply_stage(stage: Stage, rows: list[Row]) -> list[Row]:
    """Run `stage` on the kept rows of a batch it serves; pass the others around it; never raise for a row.

    If the batch fails, each kept row is retried alone, so only the row that raises is
    quarantined. Output order: the stage's output rows, then the rows it did not see.
    """
    def serves(row: Row) -> bool:
        return row.get("status", KEPT) == KEPT and (stage.takes_audio_only or row.get("record_type") != "audio_clip")

    kept = [r for r in rows if serves(r)]
    passed = [r for r in rows if not serves(r)]
    if not kept:
        return passed
    try:
        return _checked(stage, stage.process_batch(kept)) + passed
    except Exception as exc:  # noqa: BLE001 - any failure of a stage becomes a record, never a crashed run
        if len(kept) == 1:
            return [quarantine(kept[0], stage.name, exc)] + passed
    out: list[Row] = []
    for row in kept:
        try:
            out += _checked(stage, stage.process_batch([row]))
        except Exception as exc:  # noqa: BLE001
            out.append(quarantine(row, stage.name, exc))
    return out + passed


def _checked(stage: Stage, out: Any) -> list[Row]:
    if not isinstance(out, list) or not all(isinstance(r, dict) for r in out):
        raise TypeError(f"stage {stage.name!r}: process_batch must return a list of dict rows, got {type(out).__name__}")
    return out


class _StageFn:
    """A stage as a Ray Data UDF: setup once per worker process, then batches; each batch is reported
    to the run's `StageCounters` actor (curation/progress.py) when one is given."""

    def __init__(self, stage: Stage, counters: Any = None):
        self.stage = stage
        self.counters = counters
        self._ready = False

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.stage.setup()
            self._ready = True
        rows = decode_rows(batch)
        batch_id = uuid.uuid4().hex
        if self.counters is not None:
            self.counters.started.remote(self.stage.name, batch_id)
        out = apply_stage(self.stage, rows)
        if self.counters is not None:
            kept = sum(r.get("status", KEPT) == KEPT for r in out)
            self.counters.finished.remote(self.stage.name, batch_id, len(rows), len(out), kept)
        return encode_rows(out)


class StageTask(_StageFn):
    """A stage as Ray Data tasks: stateless, setup once per worker process."""


class StageActor(_StageFn):
    """A stage as a Ray Data actor pool: setup (model loading) when the actor starts, then many batches."""

    def __init__(self, stage: Stage, counters: Any = None):
        super().__init__(stage, counters)
        self.stage.setup()
        self._ready = True


class RebuiltStageActor(StageActor):
    """An actor of a stage in another environment, built there from plain settings (`stage_recipe`), so the
    worker never unpickles an object of the driver's config classes, whose pickled form may differ between
    the two environments' pydantic."""

    def __init__(self, recipe: tuple[str, str, dict[str, Any]], counters: Any = None):
        stage_class, config_class, settings = recipe
        super().__init__(_load(stage_class)(_load(config_class).model_validate(settings)), counters)


def stage_recipe(stage: Stage) -> tuple[str, str, dict[str, Any]]:
    """What `RebuiltStageActor` builds `stage` from: its class, its config section's class and that
    section's settings as JSON-able values. Stages run outside "main" take their config section as their
    only constructor argument and keep it as `self.config`."""
    config = getattr(stage, "config", None)
    if config is None or not hasattr(config, "model_dump"):
        raise TypeError(f"stage {stage.name!r} runs in environment {stage.resources.environment!r} but keeps no "
                        "config section (self.config) to be rebuilt from in the worker")
    return _path(type(stage)), _path(type(config)), config.model_dump(mode="json")


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _named(cls: type[_StageFn], stage: Stage) -> type[_StageFn]:
    """`cls` renamed after the stage: Ray Data names an operator after its UDF's class, so its progress
    lines and errors say MapBatches(transcode) rather than MapBatches(StageTask)."""
    return type(stage.name, (cls,), {"__module__": cls.__module__})


def add_stage(ds: Any, stage: Stage, runtime_envs: dict[str, dict[str, Any]] | None = None,
              counters: Any = None) -> Any:
    """Append `stage` to a Ray Dataset: tasks for CPU stages, an actor pool for model stages; `runtime_envs`
    maps environment names to Ray runtime_envs (ovi_pl.envs.runtime_env); `counters` (a StageCounters actor
    handle) receives each batch's counts."""
    import ray.data

    res = stage.resources
    kwargs: dict[str, Any] = dict(batch_size=stage.batch_size, batch_format="pyarrow", num_cpus=res.cpus,
                                  zero_copy_batch=False)
    if res.gpus:
        kwargs["num_gpus"] = res.gpus
    if res.memory_gb:
        kwargs["memory"] = res.memory_gb * 2**30
    if res.environment != "main":
        if res.environment not in (runtime_envs or {}):
            raise ValueError(f"stage {stage.name!r} runs in environment {res.environment!r}, which is not in envs")
        # Only this stage's workers start in that environment; the driver and the other stages stay on main.
        kwargs["runtime_env"] = runtime_envs[res.environment]  # type: ignore[index]
    if res.actors:
        actor, args = (RebuiltStageActor, stage_recipe(stage)) if res.environment != "main" else (StageActor, stage)
        return ds.map_batches(_named(actor, stage), fn_constructor_args=(args, counters),
                              compute=ray.data.ActorPoolStrategy(size=res.actors), **kwargs)
    fn: Callable[[pa.Table], pa.Table] = _named(StageTask, stage)(stage, counters)
    return ds.map_batches(fn, **kwargs)
