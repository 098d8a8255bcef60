"""From config to shards: build the stage list, run it on Ray Data, write shards, markers and the report."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .config import REPO_ROOT, CurationConfig
from .keys import source_prefix
from .report import RunAccounting, make_record, write_manifest, write_report
from .runner import add_stage, decode_rows
from .stage import KEPT, QUARANTINED, Row, Stage
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
from .writer import Markers, ShardWriter


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def state(self) -> Path:
        return self.root / "_state"

    @property
    def work(self) -> Path:
        return self.root / "_work"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report"


def build_stages(config: CurationConfig, paths: RunPaths) -> list[Stage]:
    """The stages in order, cheap per-input checks first so expensive work only sees survivors."""
    f = config.filters
    stages: list[Stage] = [ProbeInputs(config.probe, str(paths.work / "downloads"))]
    # Audio-only segments come from the whole source before it is cut into clips (so they follow its
    # speech and reach 12 s) and before the video filters, which do not apply to them. Their flacs go
    # next to the clips so the same cleanup (start of run, shard close) covers them.
    if config.speech.audio_segments.enabled:
        stages.append(AudioSegmentsStage(config.speech.audio_segments, config.speech.vad, str(paths.work / "clips")))
    if f.area.enabled:
        stages.append(AreaFilterStage(f.area))
    stages += [CutClips(config.scenes, config.clip), TranscodeClips(config.transcode, config.clip, str(paths.work / "clips"))]
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


# Rows written to shards: clips (audio_video) and audio-only segments of their sources.
_SAMPLE_TYPES = ("clip", "audio_clip")


@dataclass
class _InputProgress:
    """What of one input has arrived. Rows come back in any order (each travels as its own block):
    the input is complete when all `num_clips` clip rows (or its one input row) are in, and as many
    audio-only segment rows as the audio_segments stage announced on it (`num_audio_segments`,
    carried by every clip cut from it)."""

    uri: str
    expected: int | None = None      # clip rows (or 1 for an input-level row)
    main_rows: int = 0
    segments_announced: int = 0
    segments_arrived: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    open_keys: set[str] = field(default_factory=set)

    def add(self, row: Row) -> None:
        if row.get("record_type") == "audio_clip":
            self.segments_arrived += 1
            return
        self.expected = row.get("num_clips", 1) if row.get("record_type") == "clip" else 1
        self.main_rows += 1
        self.segments_announced = max(self.segments_announced, int(row.get("num_audio_segments") or 0))

    def complete(self) -> bool:
        if self.expected is None or self.main_rows < self.expected or self.open_keys:
            return False
        return self.segments_arrived >= self.segments_announced


class OutputCollector:
    """Driver side: turns finished rows into shard samples, records and completion markers."""

    def __init__(self, paths: RunPaths, config: CurationConfig, total_inputs: int, log: Any = print):
        self.paths = paths
        self.writer = ShardWriter(paths.shards, config.output.shard_max_samples, config.output.shard_max_bytes)
        self.markers = Markers(paths.state)
        self.inputs: dict[str, _InputProgress] = {}
        self.key_owner: dict[str, str] = {}
        self.total = total_inputs
        self.finished = 0
        self.log = log
        self.clips_dir = paths.work / "clips"
        self.downloads: dict[str, Path] = {}  # input_id -> its local copy (fsspec inputs), removed when done

    def add(self, row: Row) -> None:
        progress = self.inputs.setdefault(row["input_id"], _InputProgress(row["uri"]))
        progress.add(row)
        if row.get("path") and Path(row["path"]).parent == self.paths.work / "downloads":
            self.downloads[row["input_id"]] = Path(row["path"])
        record = make_record(row)
        progress.records.append(record)
        closed: list[tuple[str, list[str]]] = []
        if row.get("status") == KEPT and row.get("record_type") in _SAMPLE_TYPES:
            key = row["key"]
            if key in self.writer.written:  # written by a run that died before this input's marker
                record["shard"] = self.writer.written[key]
                _remove_work_files(row)
            else:
                self.key_owner[key] = row["input_id"]
                progress.open_keys.add(key)
                members: dict[str, bytes | Path] = {"json": row["sample_json"].encode()}
                if row["record_type"] == "clip":
                    members["mp4"] = Path(row["mp4_path"])
                members["flac"] = Path(row["flac_path"])
                closed = self.writer.add(key, members)
        elif row.get("record_type") in _SAMPLE_TYPES:
            # Not kept, whichever stage said so (a quarantined row may not name its files): nothing may stay.
            _remove_work_files(row, self.clips_dir)
        elif row.get("status") == QUARANTINED:
            # An input-level stage that writes files (audio_segments) failed part-way: its keys share a prefix.
            for stale in self.clips_dir.glob(f"{source_prefix(row['uri'])}-*"):
                stale.unlink(missing_ok=True)
        self._on_closed(closed)
        self._maybe_done(row["input_id"])

    def finish(self) -> None:
        self._on_closed(self.writer.finish())
        for input_id in list(self.inputs):
            self._maybe_done(input_id)
        unfinished = [p.uri for p in self.inputs.values()]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} inputs did not finish (rows missing from the pipeline): "
                               f"{unfinished[:5]}; rerun to resume them")

    def _on_closed(self, closed: list[tuple[str, list[str]]]) -> None:
        for name, keys in closed:
            for key in keys:
                owner = self.inputs.get(self.key_owner.pop(key, ""))
                if owner is None:
                    continue
                owner.open_keys.discard(key)
                for record in owner.records:
                    if record.get("key") == key:
                        record["shard"] = name
                        _remove_work_files({"mp4_path": self.paths.work / "clips" / f"{key}.mp4",
                                            "flac_path": self.paths.work / "clips" / f"{key}.flac"})
            for input_id in {r for r in list(self.inputs)}:
                self._maybe_done(input_id)

    def _maybe_done(self, input_id: str) -> None:
        progress = self.inputs.get(input_id)
        if progress is None or not progress.complete():
            return
        self.markers.write(input_id, progress.uri, progress.records)
        del self.inputs[input_id]
        download = self.downloads.pop(input_id, None)
        if download is not None:
            download.unlink(missing_ok=True)
        self.finished += 1
        kept = sum(r["status"] == KEPT and r.get("record_type") != "audio_clip" for r in progress.records)
        audio = sum(r["status"] == KEPT and r.get("record_type") == "audio_clip" for r in progress.records)
        reasons = sorted({f"{r['stage']}:{r['reason']}" for r in progress.records if r["status"] != KEPT})
        self.log(f"[curation] input {self.finished}/{self.total} done: {progress.uri} -> {kept} kept"
                 + (f" (+{audio} audio segments)" if audio else "")
                 + (f", not kept: {', '.join(reasons)}" if reasons else ""))


def _remove_work_files(row: Row, clips_dir: Path | None = None) -> None:
    """Delete a sample row's work files: those it names and, given `clips_dir`, those its key names there."""
    for name in ("mp4_path", "flac_path"):
        if row.get(name):
            Path(row[name]).unlink(missing_ok=True)
    if clips_dir is not None and row.get("key"):
        for suffix in (".mp4", ".flac"):
            (clips_dir / f"{row['key']}{suffix}").unlink(missing_ok=True)


def init_ray(config: CurationConfig) -> None:
    """Connect to the cluster the config or RAY_ADDRESS names, or start an in-process one."""
    import secrets

    import ray

    if ray.is_initialized():
        return
    address = config.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        # Under `ray job submit` the job's runtime_env (working_dir) already applies to this driver.
        ray.init(address=address)
        return
    # Workers of a local cluster inherit this environment; the repo root on PYTHONPATH lets them
    # unpickle the stages when run.py was started as a script rather than an installed package.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    # With no auth configured, Ray starts a new cluster with token auth and saves a fresh token to
    # ~/.ray/auth_token. That file outlives this private cluster and turns token auth on for every
    # later `ray start --head` of the user, while `ray job submit` only sends a token under
    # RAY_AUTH_MODE=token: the README's commands then fail with "Missing authentication token".
    # A token of its own in the environment (the cluster's processes inherit it) keeps this cluster
    # behind token auth and leaves nothing in the home directory. Auth the user set up is left alone.
    if not any(os.environ.get(v) for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # address="local": never attach to some other cluster on this machine that `ray start` left running.
    ray.init(address="local", num_cpus=config.ray.num_cpus, include_dashboard=False)


def run(config: CurationConfig, log: Any = print) -> dict[str, Any]:
    """Run the pipeline; return the summary. Safe to rerun on the same output dir: it resumes."""
    t0 = time.time()
    paths = RunPaths(config.output.dir.resolve())
    inputs = discover(config)  # before anything is written: a missing input path fails an untouched output dir
    # Clips a killed run left half-transcoded; their inputs have no marker and are redone.
    shutil.rmtree(paths.work / "clips", ignore_errors=True)
    for p in (paths.shards, paths.state, paths.work):
        p.mkdir(parents=True, exist_ok=True)
    _check_config_unchanged(config, paths)
    collector = OutputCollector(paths, config, len(inputs), log)
    done = collector.markers.done_ids()
    todo = [r for r in inputs if r["input_id"] not in done]
    log(f"[curation] {len(inputs)} inputs, {len(inputs) - len(todo)} already done, {len(todo)} to process; "
        f"output {paths.root}")
    collector.total = len(todo)
    if todo:
        _execute(config, paths, todo, collector, log)
    # Two passes over the markers (counts and column types, then the parquet), so the driver's
    # memory does not grow with the number of clips.
    accounting = RunAccounting()
    for record in collector.markers.records():
        accounting.add(record)
    write_manifest(collector.markers.records(), accounting.manifest_schema(), paths.manifest)
    summary = write_report(accounting, paths.report, _thresholds(config))
    summary["seconds"] = round(time.time() - t0, 1)
    summary["shards"] = len(list(paths.shards.glob("shard-*.tar")))
    _print_counts(summary, paths, log)
    return summary


def stream_rows(rows: list[Row], stages: list[Stage], models_python: str | None = None) -> Iterator[Row]:
    """Run `stages` over `rows` on Ray Data (Ray must be initialised); yield rows as they finish."""
    import ray.data

    # from_items packs the inputs into a few blocks: one block each would cost the driver about 1 ms per input
    # before any work starts (25 s at 20k inputs). Splitting them as they stream gives each input its own
    # block, so inputs spread over workers from the first stage on.
    ds = ray.data.from_items([{"row": pickle.dumps(r, protocol=5)} for r in rows])
    ds = ds.repartition(target_num_rows_per_block=1)
    for stage in stages:
        ds = add_stage(ds, stage, models_python)
        if stage.fans_out:
            # A long source yields many clips in one block; one clip per block lets the next stages fan out.
            ds = ds.repartition(target_num_rows_per_block=1)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield from decode_rows(batch)


def _execute(config: CurationConfig, paths: RunPaths, todo: list[Row], collector: OutputCollector, log: Any) -> None:
    stages = build_stages(config, paths)
    init_ray(config)
    for stage in stages:
        log(f"[curation] stage {stage.describe()}")
    for row in stream_rows(todo, stages, str(config.models_python())):
        collector.add(row)
    collector.finish()


def _check_config_unchanged(config: CurationConfig, paths: RunPaths) -> None:
    """Warn when resuming with different settings: finished inputs keep the old settings' results."""
    saved = paths.state / "config.json"
    current = config.model_dump(mode="json", exclude={"ray"})
    if saved.exists():
        if json.loads(saved.read_text()) != current:
            print(f"[curation] warning: config differs from the one {paths.root} was started with; finished inputs "
                  "are not redone (use a new output.dir to apply new settings everywhere)", file=sys.stderr)
    else:
        saved.write_text(json.dumps(current, indent=2))


def _thresholds(config: CurationConfig) -> dict[str, float]:
    f = config.filters
    return {"area": f.area.min_area, "mean_volume_db": f.volume.min_mean_volume_db, "motion": f.motion.min_motion,
            "aesthetic": f.aesthetic.min_score}


def _print_counts(summary: dict[str, Any], paths: RunPaths, log: Any) -> None:
    audio = f"{summary['audio_segments']} audio segments, " if summary.get("audio_segments") else ""
    log(f"[curation] finished in {summary['seconds']} s: {summary['inputs']} inputs, {summary['clips']} clips, "
        f"{summary['kept']} kept, {summary['rejected']} rejected, {summary['quarantined']} quarantined, "
        f"{audio}{summary['shards']} shards")
    if summary["sync_methods"]:
        judged = ", ".join(f"{n} {m}" for m, n in summary["sync_methods"].items())
        log(f"[curation] sync judged by: {judged}; {summary['kept_unverified']} kept clips unverified")
    for reason, count in summary["by_reason"].items():
        log(f"[curation]   {count:6d}  {reason}")
    log(f"[curation] shards: {paths.shards}  manifest: {paths.manifest}  report: {paths.report / 'index.html'}")
