"""From config to shards: build the stage list, run it on Ray Data, have shards written, commit markers.

The driver / worker split, in one place (`_execute`):
- workers run the stages (Ray Data tasks and actor pools) and write the shards (`write_shard` tasks);
- the driver streams the finished rows' metadata out of Ray Data, plans which samples go into which
  shard (`OutputCollector`, `ShardPlanner`), submits each full shard to a worker, and when a shard is
  in place commits the markers of the inputs it completes. It never reads a clip's bytes.
Before any work it checks that the stages fit on the cluster (`cluster.check_stages_fit`); while the
run goes it logs progress (`progress.py`) to the console and to `output.dir/run.log`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import socket
import time
from typing import Any, Iterator

from data_specs.lineage import write_dataset_file

from ovi_pl.envs import runtime_env

from .cluster import check_stages_fit, init_ray
from .collector import OutputCollector, RunPaths
from .config import CurationConfig
from .progress import ProgressReporter, StageCounters, describe_stages, eta, stuck_stages
from .report import RunAccounting, write_manifest, write_report
from .runner import add_stage, decode_rows
from .stage import Row, Stage
from .stages.aesthetic import AestheticFilterStage
from .stages.captions import CaptionStage
from .stages.speech import AudioSegmentsStage, TranscribeStage, VoiceActivityStage
from .stages.sync import AVSyncStage
from .stages.syncnet import SyncNetFilterStage
from .stages.area import AreaFilterStage
from .stages.discover import DiscoverInputs, read_manifest
from .stages.motion import MotionFilterStage
from .stages.package import PackageSamples
from .stages.probe import ProbeInputs
from .stages.scenes import CutClips
from .stages.transcode import TranscodeClips
from .stages.volume import VolumeFilterStage
from .writer import ShardSpec, WrittenShard, write_shard

log = logging.getLogger("curation")

# The config section that sizes each actor pool, for the message when the pools do not fit the cluster.
POOL_SETTINGS = {AestheticFilterStage.name: "filters.aesthetic", TranscribeStage.name: "speech.asr",
                 SyncNetFilterStage.name: "filters.syncnet", CaptionStage.name: "captions"}


class PipelineStalledError(RuntimeError):
    """No stage took or handed on a row for `ray.stall_timeout_s`."""


def build_stages(config: CurationConfig, paths: RunPaths) -> list[Stage]:
    """The stages in order, cheap per-input checks first so expensive work only sees survivors."""
    f = config.filters
    stages: list[Stage] = [ProbeInputs(config.probe, str(paths.downloads))]
    # Audio-only segments come from the whole source before it is cut into clips (so they follow its
    # speech and reach 12 s) and before the video filters, which do not apply to them. Their flacs go
    # next to the clips so the same cleanup (start of run, shard close) covers them.
    if config.speech.audio_segments.enabled:
        stages.append(AudioSegmentsStage(config.speech.audio_segments, config.speech.vad, str(paths.clips)))
    if f.area.enabled:
        stages.append(AreaFilterStage(f.area))
    stages += [CutClips(config.scenes, config.clip), TranscodeClips(config.transcode, config.clip, str(paths.clips))]
    if f.volume.enabled:
        stages.append(VolumeFilterStage(f.volume))
    if f.motion.enabled:
        stages.append(MotionFilterStage(f.motion))
    if f.aesthetic.enabled:
        stages.append(AestheticFilterStage(f.aesthetic))
    # Speech before sync (SyncNet and the weight-free judges use the clip's audio) and
    # before captions, which quote the transcript inside <S>..<E>.
    if config.speech.vad.enabled:
        stages.append(VoiceActivityStage(config.speech.vad))
    if config.speech.asr.enabled:
        stages.append(TranscribeStage(config.speech.asr))
    if f.syncnet.enabled:
        stages.append(SyncNetFilterStage(f.syncnet))
    if f.sync.enabled:
        stages.append(AVSyncStage(f.sync))
    if config.captions.enabled:
        stages.append(CaptionStage(config.captions))
    stages.append(PackageSamples(config.clip))
    return stages


def discover(config: CurationConfig) -> list[Row]:
    """One row per named input (inputs.paths expanded, then each manifest line), rejected ones included;
    raises InputNotFoundError listing every path of inputs.paths that does not exist."""
    specs = [{"spec": p, "caption": None, "base": os.getcwd(), "origin": f"inputs.paths[{i}]"}
             for i, p in enumerate(config.inputs.paths)]
    if config.inputs.manifest is not None:
        specs += read_manifest(config.inputs.manifest)
    # One pass over both lists, so a manifest line naming a file inputs.paths already found is a duplicate.
    return DiscoverInputs(config.inputs.extensions, strict=True).process_batch(specs)


def run(config: CurationConfig) -> dict[str, Any]:
    """Run the pipeline; return the summary. Safe to rerun on the same output dir: it resumes.
    Logs to the `curation` logger and to `output.dir/run.log`."""
    t0 = time.time()
    paths = RunPaths(config.output.dir.resolve())
    inputs = discover(config)  # before anything is written: a missing input path fails an untouched output dir
    # Clips a killed run left half-transcoded; their inputs have no marker and are redone.
    shutil.rmtree(paths.clips, ignore_errors=True)
    for p in (paths.shards, paths.state, paths.work):
        p.mkdir(parents=True, exist_ok=True)
    with _run_log(paths):
        _check_config_unchanged(config, paths)
        collector = OutputCollector(paths, config, total_inputs=0)
        done = collector.markers.done_ids()
        todo = [r for r in inputs if r["input_id"] not in done]
        log.info(f"{len(inputs)} inputs, {len(inputs) - len(todo)} already done, {len(todo)} to process; "
                 f"output {paths.root} (driver pid {os.getpid()} on {socket.gethostname()})")
        collector.total = len(todo)
        if todo:
            _execute(config, paths, todo, collector)
        # Two passes over the markers (counts and column types, then the parquet), so the driver's
        # memory does not grow with the number of clips.
        accounting = RunAccounting()
        for record in collector.markers.records():
            accounting.add(record)
        write_manifest(collector.markers.records(), accounting.manifest_schema(), paths.manifest)
        summary = write_report(accounting, paths.report, _thresholds(config))
        summary["seconds"] = round(time.time() - t0, 1)
        summary["shards"] = len(list(paths.shards.glob("shard-*.tar")))
        summary["dataset_id"] = write_lineage(config, paths, summary)
        _log_counts(summary, paths)
    return summary


def write_lineage(config: CurationConfig, paths: RunPaths, summary: dict[str, Any]) -> str:
    """Write the shard set's `dataset.json` (data_specs.lineage) beside its tars, where training finds it
    from the shard URLs alone; return its dataset id."""
    settings = _product_settings(config)
    settings["output"].pop("dir")  # where the data went, not what it is: a moved run keeps its id
    return write_dataset_file(paths.shards, paths.manifest, settings, summary, paths.root).dataset_id


def stream_rows(rows: list[Row], stages: list[Stage], runtime_envs: dict[str, dict[str, Any]] | None = None,
                counters: Any = None, stall_timeout_s: float | None = None) -> Iterator[Row]:
    """Run `stages` over `rows` on Ray Data (Ray must be initialised); yield rows as they finish.
    `runtime_envs` maps the environments stages name to Ray runtime_envs.

    `counters` (a StageCounters actor) gets each batch's counts. With `stall_timeout_s` (-1: never),
    a run in which nothing moves for that long raises PipelineStalledError naming the stages it waits on.
    """
    import ray
    import ray.data
    from ray.data.exceptions import ExecutionTimeoutError

    # from_items packs the inputs into a few blocks: one block each would cost the driver about 1 ms per input
    # before any work starts (25 s at 20k inputs). Splitting them as they stream gives each input its own
    # block, so inputs spread over workers from the first stage on.
    ds = ray.data.from_items([{"row": pickle.dumps(r, protocol=5)} for r in rows])
    ds = ds.repartition(target_num_rows_per_block=1)
    for stage in stages:
        ds = add_stage(ds, stage, runtime_envs, counters)
        if stage.fans_out:
            # A long source yields many clips in one block; one clip per block lets the next stages fan out.
            ds = ds.repartition(target_num_rows_per_block=1)
    if stall_timeout_s is not None:  # this dataset's own setting; the process-wide default stays as it is
        ds.context.execution_no_progress_timeout_s = stall_timeout_s
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from decode_rows(batch)
    except ExecutionTimeoutError as exc:
        where = stuck_stages([s.name for s in stages], ray.get(counters.snapshot.remote()), len(rows)) \
            if counters is not None else str(exc)
        raise PipelineStalledError(
            f"no stage took or handed on a row for {stall_timeout_s:g} s; waiting on: {where}. A stage this "
            "slow on purpose (a long source, a model loading) needs a larger ray.stall_timeout_s; a stage "
            "waiting for CPUs or GPUs needs a bigger cluster (ray.num_cpus) or smaller actor pools") from None


def _execute(config: CurationConfig, paths: RunPaths, todo: list[Row], collector: OutputCollector) -> None:
    """Run the stages over `todo` and hand each finished row to the collector; shards it fills are written
    by Ray tasks, and each written shard goes back to the collector, which commits the inputs it completes."""
    import ray

    stages = build_stages(config, paths)
    init_ray(config)
    check_stages_fit(stages, ray.cluster_resources(), POOL_SETTINGS)
    for stage in stages:
        log.info(f"stage {stage.describe()}")
    counters = ray.remote(num_cpus=0)(StageCounters).remote()
    writes = _ShardWrites(paths, config.ray.stall_timeout_s)
    started = time.monotonic()

    def progress_line() -> str:
        elapsed = time.monotonic() - started
        stage_counts = ray.get(counters.snapshot.remote(), timeout=30)
        return (f"progress: inputs {collector.finished}/{collector.total} finished "
                f"({eta(collector.finished, collector.total, elapsed)}), {collector.committed} committed, "
                f"{collector.kept} samples kept, {writes.written} shards written | "
                + " | ".join(describe_stages([s.name for s in stages], stage_counts, len(todo), elapsed)))

    with ProgressReporter(config.output.progress_interval_s, progress_line):
        runtime_envs = {name: runtime_env(config.environment(name)) for name in config.envs}
        rows = stream_rows(todo, stages, runtime_envs, counters, config.ray.stall_timeout_s or -1)
        for row in rows:
            full = collector.add(row)
            if collector.planner.open_for() > config.output.shard_max_wait_s:
                full += collector.flush()
            writes.submit(full)
            for shard in writes.finished():
                collector.shard_written(shard)
        writes.submit(collector.flush())
        for shard in writes.finished(wait=True):
            collector.shard_written(shard)
    collector.check_all_committed()


class _ShardWrites:
    """Shard writes in flight as Ray tasks (`writer.write_shard`)."""

    def __init__(self, paths: RunPaths, stall_timeout_s: float | None):
        import ray

        self.shards_dir = str(paths.shards)
        self.stall_timeout_s = stall_timeout_s
        # No CPU reserved: a write is I/O (read the work files, write one tar) and must not queue behind the
        # stages' tasks, which would hold back every marker. SPREAD: writes go out to every node's disk and
        # network rather than piling onto the driver's node.
        self.task = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(write_shard)
        self.pending: dict[Any, str] = {}  # object ref -> shard name
        self.written = 0

    def submit(self, specs: list[ShardSpec]) -> None:
        for spec in specs:
            self.pending[self.task.remote(self.shards_dir, spec)] = spec.name

    def finished(self, wait: bool = False) -> Iterator[WrittenShard]:
        """The writes done by now (with `wait`, all of them)."""
        import ray

        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1 if wait else len(self.pending),
                                timeout=self.stall_timeout_s if wait else 0)
            if not ready and wait:
                raise PipelineStalledError(f"no shard write finished for {self.stall_timeout_s:g} s "
                                           f"(ray.stall_timeout_s); waiting on {sorted(self.pending.values())}")
            if not ready:
                return
            for ref in ready:
                name = self.pending.pop(ref)
                try:
                    shard: WrittenShard = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise RuntimeError(f"writing {name} in {self.shards_dir} failed ({exc}); the inputs in it "
                                       "have no marker and are redone when the run is started again") from exc
                self.written += 1
                log.debug(f"{shard.name}: {len(shard.keys)} samples, written on {shard.host} (pid {shard.pid})")
                yield shard


@contextlib.contextmanager
def _run_log(paths: RunPaths) -> Iterator[None]:
    """Log to `output.dir/run.log` (appended to by each run and resume) for the duration of a run."""
    handler = logging.FileHandler(paths.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    level = log.level
    if log.getEffectiveLevel() > logging.DEBUG:
        log.setLevel(logging.DEBUG)  # the file gets everything; console handlers keep their own levels
    log.addHandler(handler)
    try:
        yield
    except Exception:
        log.exception("run failed")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)


def _check_config_unchanged(config: CurationConfig, paths: RunPaths) -> None:
    """Warn when resuming with different settings: finished inputs keep the old settings' results."""
    saved = paths.state / "config.json"
    current = _product_settings(config)
    if saved.exists():
        if json.loads(saved.read_text()) != current:
            log.warning(f"config differs from the one {paths.root} was started with; finished inputs are not "
                        "redone (use a new output.dir to apply new settings everywhere)")
    else:
        saved.write_text(json.dumps(current, indent=2))


def _product_settings(config: CurationConfig) -> dict[str, Any]:
    # Settings of how the run is operated, not of what it makes, may change between resumes.
    return config.model_dump(mode="json", exclude={"ray": True, "output": {"progress_interval_s": True,
                                                                          "shard_max_wait_s": True}})


def _thresholds(config: CurationConfig) -> dict[str, float]:
    f = config.filters
    return {"area": f.area.min_area, "mean_volume_db": f.volume.min_mean_volume_db, "motion": f.motion.min_motion,
            "aesthetic": f.aesthetic.min_score}


def _log_counts(summary: dict[str, Any], paths: RunPaths) -> None:
    audio = f"{summary['audio_segments']} audio segments, " if summary.get("audio_segments") else ""
    log.info(f"finished in {summary['seconds']} s: {summary['inputs']} inputs, {summary['clips']} clips, "
             f"{summary['kept']} kept, {summary['rejected']} rejected, {summary['quarantined']} quarantined, "
             f"{audio}{summary['shards']} shards")
    if summary["sync_methods"]:
        judged = ", ".join(f"{n} {m}" for m, n in summary["sync_methods"].items())
        log.info(f"sync judged by: {judged}; {summary['kept_unverified']} kept clips unverified")
    for reason, count in summary["by_reason"].items():
        log.info(f"  {count:6d}  {reason}")
    log.info(f"shards: {paths.shards}  manifest: {paths.manifest}  report: {paths.report / 'index.html'}  "
             f"log: {paths.log}")
