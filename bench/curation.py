"""Curation throughput per CPU stage (clips/s on one core) and the whole run's peak memory for N inputs.

    python bench/curation.py [--repeats 3] [--media DIR] [--set KEY=VALUE] [--skip-stages]
                             [--inputs 10 100] [--size 320x176] [--num-cpus 2] [--keep DIR] [--skip-pipeline]

Stages: the CPU stages `build_stages` makes from configs/curation.yaml's defaults (probe, area,
scenes, transcode, volume, motion, vad, av_offset, package; the model stages are off by default
and not measured) run in this process, each `setup()` once (timed apart) and then `process_batch`
on one row at a time (the pipeline's batch size), on the rows the previous stage kept: the rows
flow probe -> area -> ... -> package as they do on Ray. This process and every ffmpeg it starts
are pinned to one CPU (sched_setaffinity; OMP/MKL threads 1, as Ray sets for a 1-CPU task), so
one process = one core. Inputs: the sample clips in examples/media (1280x704 and 1344x704, 24 fps,
5.08 s: one 121-frame clip per source), or synthetic 1280x704 clips where those are missing.
Figures: clips/s of wall time on the pinned core, and CPU seconds per clip (this process plus its
ffmpeg children), the sturdier figure on a machine shared with other work.

Pipeline: `curation/run.py` as a subprocess on an in-process Ray cluster (`ray.num_cpus`, default
2) over N copies of one synthetic 5.5 s input (testsrc2 + a 440 Hz tone at --size; area filter
lowered to that size, captions from a manifest so clips are kept and written to shards). Summed
RSS of the whole process tree (driver, GCS, raylet, Ray workers, ffmpeg) is sampled every
--interval s (a worker's child caught between fork and exec is left out: it maps the worker's own
pages); the peak for each N and the ratio of the largest N's peak to the smallest N's are
printed, with wall time, kept clips/s end to end and CPU seconds per kept clip (the tree's processes,
with the ffmpeg runs the workers waited for; Ray's start-up is included).
"""

from __future__ import annotations

import os

# One thread of work: set before numpy/torch/cv2 load (Ray sets OMP_NUM_THREADS for 1-CPU tasks too).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE_MEDIA = REPO / "examples" / "media"
DEMO_MANIFEST = SAMPLE_MEDIA / "curation_demo.jsonl"
CAPTION = "A test pattern moves across the frame. <AUDCAP>A steady 440 Hz tone.<ENDAUDCAP>"
INPUT_SECONDS = 5.5  # one 121-frame (5.04 s) clip per input, the cheapest input that yields a clip


def ffmpeg_testsrc(out: Path, size: str, seconds: float, freq: int = 440) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
                    "-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=44100", "-t", f"{seconds}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-ac", "2", "-shortest", str(out)], check=True)
    return out


# ---------------------------------------------------------------------------------------------- stages

def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its waited-for children (ffmpeg, ffprobe)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stage_inputs(tmp: Path, media: Path | None) -> tuple[list[dict], str]:
    """Input rows as `discover` makes them (captions from the demo manifest, else the bench caption)."""
    from curation.stages.discover import DiscoverInputs

    files = sorted(media.glob("*.mp4")) if media is not None and media.is_dir() else []
    if files:
        captions = {}
        if DEMO_MANIFEST.is_file():
            for line in DEMO_MANIFEST.read_text().splitlines():
                entry = json.loads(line)
                if entry.get("caption"):
                    captions[Path(entry["path"]).name] = entry["caption"]
        what = f"{len(files)} clips from {media}"
    else:
        synth = tmp / "synthetic"
        synth.mkdir()
        files = [ffmpeg_testsrc(synth / f"synthetic_{i}.mp4", "1280x704", INPUT_SECONDS, 330 + 110 * i)
                 for i in range(3)]
        captions = {}
        what = f"{len(files)} synthetic testsrc2 clips ({INPUT_SECONDS} s)"
    specs = [{"spec": str(f), "caption": captions.get(f.name, CAPTION), "base": str(REPO)} for f in files]
    rows = DiscoverInputs([".mp4"], strict=True).process_batch(specs)
    sizes = []
    for f in files:
        info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                          "stream=width,height,duration", "-of", "json", str(f)],
                                         capture_output=True, check=True).stdout)["streams"][0]
        sizes.append(f"{info['width']}x{info['height']} {float(info['duration']):.2f} s")
    return rows, f"{what}: {', '.join(sizes)}"


# The old path, the CPU stages as they were when issue 14 asked for 1.5x: every stage decodes the
# transcoded clip itself (no frame cache), and the mouth judge's Haar cascade looks for faces of every size
# (`OLD_DETECTOR`) on every other 640 px frame.
OLD_PATH = {"transcode.frame_cache_width": None, "filters.sync.mouth.frame_width": 640,
            "filters.sync.mouth.detect_every": 2, "filters.sync.mouth.search_every": 2,
            "filters.sync.mouth.min_face_size": 40.0}


def old_detector():
    """The mouth judge's face detector at issue time: the cascade from its own 24 px."""
    from ovi_pl.sync.faces import HaarFaceDetector

    return HaarFaceDetector(min_size=0)


def bench_stages(repeats: int, media: Path | None, overrides: dict, with_cache: bool) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    core = cpus[-1]
    os.sched_setaffinity(0, {core})  # ffmpeg children inherit it
    try:
        _bench_stages(repeats, media, core, len(cpus), overrides, with_cache)
    finally:
        os.sched_setaffinity(0, set(cpus))


def _bench_stages(repeats: int, media: Path | None, core: int, num_cpus: int, overrides: dict,
                  with_cache: bool) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="bench-curation-stages-") as tmp_name:
        tmp = Path(tmp_name)
        rows, what = stage_inputs(tmp, media)
        print(f"stage inputs: {what}")
        print(f"pinned to CPU {core} of {num_cpus}; {repeats} timed passes over the rows after one untimed warm-up "
              "call; setup() timed apart")
        variants = [("old (issue-time settings: no frame cache, Haar from 24 px)", {**overrides, **OLD_PATH},
                     old_detector())]
        if with_cache:
            variants.append(("new (frame cache, current defaults)", overrides, None))
        totals, finals = [], []
        for i, (label, settings, detector) in enumerate(variants):
            results, final = _run_stages(rows, {**settings, "output.dir": str(tmp / f"out{i}")}, repeats, detector)
            totals.append(_print_stage_table(label, results))
            finals.append(final)
        if len(variants) == 2:
            old, new = totals
            print(f"\nnew / old clips/s per core (CPU time): {old / new:.2f}x")
            _compare_decisions(*finals)


def _run_stages(rows: list[dict], overrides: dict, repeats: int, detector: object = None
                ) -> tuple[list[tuple], list[dict]]:
    """Each stage on the rows the previous one kept; (per-stage figures, every clip's last row: rejected or
    packaged). detector: the sync stage's face detector instead of the one it makes from the config."""
    from curation.preflight import load_config
    from curation.pipeline import RunPaths, build_stages
    from curation.stage import KEPT
    from curation.stages.sync import AVSyncStage

    config = load_config(REPO / "configs" / "curation.yaml", overrides)
    stages = [AVSyncStage(config.filters.sync, detector) if detector is not None and isinstance(s, AVSyncStage)
              else s for s in build_stages(config, RunPaths(Path(overrides["output.dir"])))]
    results, rejected_rows = [], []
    for stage in stages:
        rejected_rows += [r for r in rows if r.get("status", KEPT) != KEPT]
        kept = [r for r in rows if r.get("status", KEPT) == KEPT]
        if not kept:
            print(f"{stage.name}: no rows left to process (all rejected before it)")
            break
        t0 = time.perf_counter()
        stage.setup()
        setup_s = time.perf_counter() - t0
        stage.process_batch([kept[0]])  # warm-up: lazy imports, first-call caches
        out, wall, cpu, n = [], 0.0, 0.0, 0
        for rep in range(repeats):
            for row in kept:
                c0, w0 = _cpu_seconds(), time.perf_counter()
                result = stage.process_batch([row])
                wall += time.perf_counter() - w0
                cpu += _cpu_seconds() - c0
                n += 1
                if rep == 0:
                    out += result
        rejected = [f"{r.get('reason')}" for r in out if r.get("status") != KEPT]
        results.append((stage.name, n, wall, cpu, setup_s, rejected))
        rows = out
    return results, rejected_rows + rows


def _print_stage_table(label: str, results: list[tuple]) -> float:
    """Print one path's table; return its CPU seconds per clip over all stages."""
    print(f"\n{label}")
    print(f"{'stage':<10} {'clips':>5} {'clips/s (1 core, wall)':>23} {'CPU ms/clip':>12} {'clips per CPU-s':>16} "
          f"{'setup s':>8}  rejected")
    total_cpu = 0.0
    for name, n, wall, cpu, setup_s, rejected in results:
        total_cpu += cpu / n
        print(f"{name:<10} {n:>5} {_rate(n / wall):>23} {1000 * cpu / n:>12.1f} "
              f"{_rate(n / cpu) if cpu else 'inf':>16} {setup_s:>8.2f}  {', '.join(rejected) or '-'}")
    print(f"{'all CPU stages':<16} CPU s/clip {total_cpu:.2f} -> {1 / total_cpu:.3f} clips/s per core "
          f"({3600 / total_cpu:.0f} clips/h per core)")
    return total_cpu


def _compare_decisions(old: list[dict], new: list[dict]) -> None:
    """Per clip: the decision (stage and reason where rejected) and every score, old path against new."""
    print("\nper clip, old -> new: decision; scores that differ")
    for a, b in zip(sorted(old, key=lambda r: r["key"]), sorted(new, key=lambda r: r["key"])):
        decision = [f"{r.get('status')}" + (f" ({r.get('reason')})" if r.get("reason") else "")
                    for r in (a, b)]
        sa, sb = a.get("scores", {}), b.get("scores", {})
        diffs = [f"{k} {sa.get(k)} -> {sb.get(k)}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
        print(f"  {a['key']}: {decision[0]}" + ("" if decision[0] == decision[1] else f" -> {decision[1]}")
              + f"; {', '.join(diffs) or 'same scores'}")


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


# -------------------------------------------------------------------------------------------- pipeline

def _kind(proc: psutil.Process, driver_pid: int) -> str:
    if proc.pid == driver_pid:
        return "driver"
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline()[:3])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if name in ("ffmpeg", "ffprobe"):
        return "ffmpeg"
    if name in ("ray::DashboardAgent", "ray::RuntimeEnvAgent"):
        return "other ray"
    if name.startswith("ray::_"):
        return "ray data actors"  # _StatsActor, _AutoscalingCoordinatorActor
    if name.startswith("ray::") or "default_worker.py" in cmd:
        return "ray workers"  # the task workers running the stages
    if "raylet" in name or "raylet" in cmd:
        return "raylet"
    if "gcs_server" in name:
        return "gcs_server"
    return "other ray"  # log monitor, dashboard agents, runtime env agent


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop = threading.Event()
        self.peak, self.peak_at, self.peak_breakdown, self.samples = 0, 0.0, {}, 0
        self.peak_procs, self.peak_driver, self.peak_workers = 0, 0, 0
        self.peak_worker_rss: list[int] = []
        self.series: list[tuple[float, int]] = []
        self.seen: dict[int, psutil.Process] = {}
        # (pid, start time) -> latest CPU seconds (workers: with their waited-for ffmpeg children)
        self.cpu: dict[tuple[int, float], float] = {}
        self.trace: list[tuple[float, list[tuple[int, str, int, float]]]] = []  # every sample: pid, name, rss, cpu
        self.t0 = time.perf_counter()

    def run(self) -> None:
        root = psutil.Process(self.pid)
        while not self.stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            found = []
            for p in procs:
                self.seen.setdefault(p.pid, p)
                try:
                    found.append((p, p.name(), p.ppid(), p.memory_info().rss, _kind(p, self.pid)))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            workers_pids = {p.pid for p, _, _, _, kind in found if kind in ("ray workers", "ray data actors")}
            total, breakdown, workers, per_proc, worker_rss = 0, {}, 0, [], []
            for p, name, ppid, rss, kind in found:
                if ppid in workers_pids and kind != "ffmpeg":
                    # A worker's child between fork and exec (starting ffmpeg): it still maps the worker's
                    # pages, so its RSS is the worker's over again. Counting it would add a whole worker
                    # to whichever sample catches one, more often the more clips a run has.
                    continue
                per_proc.append((p.pid, name, rss, self.cpu.get((p.pid, p.create_time()), 0.0)))
                if kind != "ffmpeg":
                    try:
                        ct = p.cpu_times()
                        # A worker's waited-for ffmpeg children count in its children_* times; the driver's
                        # and raylet's children are Ray processes sampled on their own.
                        kids = ct.children_user + ct.children_system if kind == "ray workers" else 0.0
                        self.cpu[(p.pid, p.create_time())] = ct.user + ct.system + kids
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                if kind == "ray workers":
                    worker_rss.append(rss)
                breakdown[kind] = breakdown.get(kind, 0) + rss
                workers += kind == "ray workers"
                total += rss
            now = time.perf_counter() - self.t0
            self.samples += 1
            self.series.append((now, total))
            self.trace.append((round(now, 2), per_proc))
            self.peak_procs = max(self.peak_procs, len(per_proc))
            self.peak_workers = max(self.peak_workers, workers)
            self.peak_driver = max(self.peak_driver, breakdown.get("driver", 0))
            if total > self.peak:
                self.peak, self.peak_at, self.peak_breakdown = total, now, breakdown
                self.peak_worker_rss = sorted(worker_rss, reverse=True)
            self.stop.wait(self.interval)


def run_pipeline(n: int, source: Path, work: Path, size: str, num_cpus: int, interval: float) -> dict:
    width, height = (int(v) for v in size.split("x"))
    inputs = work / f"inputs_{n}"
    inputs.mkdir()
    manifest = work / f"inputs_{n}.jsonl"
    with manifest.open("w") as f:
        for i in range(n):
            path = shutil.copy(source, inputs / f"input_{i:04d}.mp4")
            f.write(json.dumps({"path": str(path), "caption": CAPTION}) + "\n")
    out = work / f"out_{n}"
    config = work / f"curation_{n}.yaml"
    config.write_text(
        "# bench/curation.py: configs/curation.yaml defaults but the area filter, lowered to the synthetic size\n"
        f"inputs:\n  manifest: {manifest}\noutput:\n  dir: {out}\nray:\n  num_cpus: {num_cpus}\n"
        f"filters:\n  area:\n    min_area: {width * height}\n")
    log = work / f"run_{n}.log"
    t0 = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, str(REPO / "curation" / "run.py"), "--config", str(config)],
                                cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    (work / f"rss_{n}.json").write_text(json.dumps(sampler.trace))
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"curation run on {n} inputs exited {rc}; log {log}:\n{text[-3000:]}")
    done = re.search(r"finished in ([\d.]+) s: (\d+) inputs, (\d+) clips, (\d+) kept, (\d+) rejected, "
                     r"(\d+) quarantined, (\d+) shards", text)
    if done is None:
        raise SystemExit(f"no summary line in {log}:\n{text[-3000:]}")
    seconds, inputs_n, clips, kept, rejected, quarantined, shards = (float(done.group(1)), *map(int, done.groups()[1:]))
    series = sampler.series
    return {"n": n, "wall_s": wall, "run_s": seconds, "inputs": inputs_n, "clips": clips, "kept": kept,
            "rejected": rejected, "quarantined": quarantined, "shards": shards, "peak": sampler.peak,
            "peak_at": sampler.peak_at, "breakdown": sampler.peak_breakdown, "samples": sampler.samples,
            "peak_procs": sampler.peak_procs, "peak_worker_rss": sampler.peak_worker_rss,
            "peak_workers": sampler.peak_workers, "peak_driver": sampler.peak_driver,
            "series": series, "log": log, "seen": list(sampler.seen.values()), "cpu_s": sum(sampler.cpu.values())}


def _survivors(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Processes of a finished run's tree still alive (is_running also checks the pid was not reused)."""
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def bench_pipeline(counts: list[int], size: str, num_cpus: int, interval: float, keep: Path | None) -> None:
    mib = 2**20
    work = Path(tempfile.mkdtemp(prefix="bench-curation-pipeline-", dir=keep))
    try:
        source = ffmpeg_testsrc(work / "source.mp4", size, INPUT_SECONDS)
        print(f"pipeline inputs: copies of one synthetic {size} {INPUT_SECONDS} s testsrc2 + 440 Hz tone (H.264/AAC); "
              f"in-process Ray cluster of {num_cpus} CPUs; RSS of the whole process tree every {interval} s")
        results = []
        for n in counts:
            r = run_pipeline(n, source, work, size, num_cpus, interval)
            results.append(r)
            print(f"  N={n}: {r['kept']}/{r['clips']} clips kept, {r['quarantined']} quarantined, "
                  f"wall {r['wall_s']:.1f} s, peak {r['peak'] / mib:.0f} MiB", flush=True)
            time.sleep(2)  # let Ray's processes exit before the next run is sampled
            left = _survivors(r["seen"])
            if left:
                print(f"  warning: {len(left)} processes of the N={n} run outlived it: "
                      f"{[(p.pid, p.name()) for p in left]}", flush=True)
        print()
        print(f"{'inputs':>6} {'kept':>5} {'wall s':>7} {'run s':>6} {'clips/s':>8} {'CPU s/clip':>10} "
              f"{'peak RSS MiB':>13} {'driver MiB':>11} {'procs':>6} {'task workers':>13}  at the peak (MiB)")
        for r in results:
            parts = ", ".join(f"{k} {v / mib:.0f}" for k, v in sorted(r["breakdown"].items(), key=lambda kv: -kv[1]))
            print(f"{r['n']:>6} {r['kept']:>5} {r['wall_s']:>7.1f} {r['run_s']:>6.1f} {r['kept'] / r['run_s']:>8.2f} "
                  f"{r['cpu_s'] / max(1, r['kept']):>10.2f} {r['peak'] / mib:>13.0f} {r['peak_driver'] / mib:>11.0f} "
                  f"{r['peak_procs']:>6} {len(r['peak_worker_rss']):>13}"
                  f"  {parts}")
        for r in results:
            # Memory that grows with the inputs processed shows as a second half above the first.
            s = r["series"]
            half = [rss for t, rss in s if t >= s[-1][0] / 2] or [0]
            first = [rss for t, rss in s if s[-1][0] / 4 <= t < s[-1][0] / 2] or [0]
            print(f"N={r['n']}: median RSS over 25-50% of the run {sorted(first)[len(first) // 2] / mib:.0f} MiB, "
                  f"over 50-100% {sorted(half)[len(half) // 2] / mib:.0f} MiB; task workers at the peak "
                  f"(MiB): {', '.join(f'{w / mib:.0f}' for w in r['peak_worker_rss'])}; {r['samples']} samples")
        if len(results) > 1:
            a, b = results[0], results[-1]
            print(f"peak({b['n']}) / peak({a['n']}) = {b['peak'] / a['peak']:.2f}; "
                  f"driver {b['peak_driver'] / a['peak_driver']:.2f}")
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the stage rows")
    parser.add_argument("--media", type=Path, default=SAMPLE_MEDIA, help="clips for the stage figures")
    parser.add_argument("--inputs", type=int, nargs="+", default=[10, 100], help="input counts for the pipeline runs")
    parser.add_argument("--size", default="320x176", help="WxH of the synthetic pipeline inputs")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the in-process Ray cluster")
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, seconds")
    parser.add_argument("--keep", type=Path, default=None, help="keep the pipeline runs' files under this dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the stage figures, e.g. filters.area.min_area=50000 (YAML value)")
    parser.add_argument("--no-frame-cache", action="store_true",
                        help="stage figures for the old path only (issue-time settings: every stage decodes the "
                             "clip, the Haar cascade from 24 px); by default the old and the new path (frame "
                             "cache, current defaults) run side by side")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    if not args.skip_stages:
        import yaml

        overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.set)}
        bench_stages(args.repeats, args.media, overrides, not args.no_frame_cache)
        print()
    if not args.skip_pipeline:
        bench_pipeline(args.inputs, args.size, args.num_cpus, args.interval, args.keep)


if __name__ == "__main__":
    main()
