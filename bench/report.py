"""The curation report at scale: time and peak memory of `write_report` over synthetic runs of N clips.

    python bench/report.py [--records 100000] [--clips-per-input 20]

Each N gets fresh markers in a temporary directory: N/clips-per-input inputs of clip records shaped as
`make_record` makes them (six scores, a per-stage time share for eight stages, a shard for kept clips),
a third of them rejected for one of three reasons, one input in fifty rejected by the probe and one clip in
a hundred quarantined. Every clip has a thumbnail strip waiting in `_work/thumbs` (hard links to one real
strip made from a sample clip as transcode makes them, so the disk holds a few JPEGs), as
transcode leaves them. A child process then runs what a run runs at its end (RunAccounting over the
markers, write_manifest, write_report) and reports each step's wall and CPU seconds (CPU seconds are the
figure to compare on a shared machine) and its peak RSS; the report's
files and the largest page are measured after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCORES = ("area", "mean_volume_db", "motion", "speech_fraction", "sync_offset", "sync_confidence")
STAGES = ("discover", "probe", "area", "scenes", "transcode", "volume", "motion", "package")
REJECTIONS = (("motion", "static", "motion 0.004 px/frame < filters.motion.min_motion 0.02"),
              ("volume", "low_volume", "mean volume -71.2 dBFS < filters.volume.min_mean_volume_db -60"),
              ("sync", "av_offset", "onset judge: audio 5 frames late, |offset| > 3"))

CHILD = """
import json, resource, sys, time
from pathlib import Path
from curation.report import RunAccounting, write_manifest, write_report
from curation.writer import Markers
root = Path(sys.argv[1])
seconds, cpu = {}, {}
t, c = time.perf_counter(), time.process_time()
markers = Markers(root / "_state")
accounting = RunAccounting()
for record in markers.records():
    accounting.add(record)
seconds["accounting"], cpu["accounting"] = time.perf_counter() - t, time.process_time() - c
t, c = time.perf_counter(), time.process_time()
write_manifest(markers.records(), accounting.manifest_schema(), root / "manifest.parquet")
seconds["manifest"], cpu["manifest"] = time.perf_counter() - t, time.process_time() - c
t, c = time.perf_counter(), time.process_time()
summary = write_report(accounting, root / "report", {"motion": 0.02})
seconds["report"], cpu["report"] = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "records": sum(summary[k] for k in ("kept", "rejected", "quarantined"))}))
"""


def _clip(input_id: str, uri: str, j: int, n: int, clips: int) -> dict:
    share = [[stage, 0.05 * (k + 1) / clips, 1 / clips if k < 4 else 1.0] for k, stage in enumerate(STAGES)]
    record = {"record_type": "clip", "input_id": input_id, "uri": uri, "key": f"{input_id}-{j:05d}",
              "clip_index": j, "num_clips": clips, "start_s": j * 5.04, "end_s": (j + 1) * 5.04, "status": "kept",
              "stage": None, "reason": None, "detail": None, "error_type": None, "error": None, "has_caption": True,
              "sync_method": "onset", "sync_verified": n % 5 != 0, "source_duration_s": 120.0, "source_fps": 24.0,
              "source_width": 1280, "source_height": 704, "source_has_audio": True,
              "scores": {name: float(n % 7) + 0.25 for name in SCORES}, "stage_time": share,
              "shard": f"shard-{n // 256:06d}.tar"}
    if n % 100 == 1:
        record.update(status="quarantined", stage="motion", reason="error", error_type="MediaToolError",
                      error="ffmpeg exited 1: moov atom not found", detail="frames.py:131", shard=None)
    elif n % 3 == 0:
        stage, reason, detail = REJECTIONS[(n // 3) % len(REJECTIONS)]
        record.update(status="rejected", stage=stage, reason=reason, detail=detail, shard=None)
    return record


def write_run(root: Path, records: int, clips_per_input: int, strip: Path) -> None:
    from curation.writer import Markers

    markers = Markers(root / "_state")
    thumbs = root / "_work" / "thumbs"
    thumbs.mkdir(parents=True)
    n = 0
    for i in range(0, records, clips_per_input):
        input_id = f"input{i // clips_per_input:07d}"
        uri = f"s3://bucket/videos/{input_id}.mp4"
        if (i // clips_per_input) % 50 == 49:
            markers.write(input_id, uri, [{"record_type": "input", "input_id": input_id, "uri": uri,
                                           "status": "rejected", "stage": "probe", "reason": "not_media",
                                           "detail": "not a media file; if it should be a video, fetch it again",
                                           "scores": {}, "stage_time": [["discover", 0.001, 1], ["probe", 0.2, 1]]}])
            continue
        batch = []
        for j in range(min(clips_per_input, records - i)):
            batch.append(_clip(input_id, uri, j, n, clips_per_input))
            if n % 10_000 == 0:  # a file system allows some tens of thousands of links to one file
                source = shutil.copy(strip, root / f"strip-{n}.jpg")
            os.link(source, thumbs / f"{batch[-1]['key']}.jpg")
            n += 1
        markers.write(input_id, uri, batch)


def make_strip(clip: Path, dest: Path) -> Path:
    """A real strip of a sample clip, made as transcode makes them (an output of an ffmpeg command)."""
    from curation.thumbnails import StripOutput
    from ovi_pl.media.tools import FFMPEG, run_tool

    strip = StripOutput(dest, 121, "fps=24")
    run_tool([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(clip), *strip.args()])
    made = strip.keep()
    assert made is not None, f"{clip} gave no frame"
    return made


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[100000])
    parser.add_argument("--clips-per-input", type=int, default=20)
    args = parser.parse_args()
    for n in args.records:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            strip = make_strip(REPO / "examples/media/two_men_closeup_704x1280.mp4", root / "strip.jpg")
            t0 = time.time()
            write_run(root, n, args.clips_per_input, strip)
            made = time.time() - t0
            out = subprocess.run([sys.executable, "-c", CHILD, tmp], capture_output=True, text=True, check=True,
                                 cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]})
            result = json.loads(out.stdout.strip().splitlines()[-1])
            pages = list((root / "report" / "pages").glob("*.html"))
            page_bytes = sorted(p.stat().st_size for p in pages)
            s, c = result["seconds"], result["cpu"]
            print(f"{result['records']:>8d} records ({n} clips asked, probe-rejected inputs replace some): "
                  f"write_report {s['report']:.1f} s ({c['report']:.1f} s CPU), accounting {s['accounting']:.1f} s "
                  f"({c['accounting']:.1f}), manifest {s['manifest']:.1f} s ({c['manifest']:.1f}), peak RSS {result['peak_mib']:.0f} MiB; {len(pages)} pages, largest "
                  f"{page_bytes[-1] / 1024:.0f} KiB, index {(root / 'report/index.html').stat().st_size / 1024:.0f} KiB, "
                  f"{len(os.listdir(root / 'report/thumbs'))} strips moved; run written in {made:.1f} s", flush=True)


if __name__ == "__main__":
    main()
