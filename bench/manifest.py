"""End-of-run accounting of a curation run: the driver's peak memory while it turns the completion
markers into manifest.parquet and the report, for growing numbers of records.

    python bench/manifest.py [--records 20000 200000] [--clips-per-input 50]

Each N gets fresh markers (N/clips-per-input inputs, records shaped as `make_record` makes them for a
clip that went through every default stage: ten scores, a rejection reason on every third) in a
temporary directory, then a child process runs what `curation.pipeline.run` runs at its end
(RunAccounting over the markers, write_manifest, write_report) and reports its peak RSS
(ru_maxrss) and wall time. Streaming means the peak barely moves with N; the figures printed are
peak MiB per N, the growth in bytes per extra record, and records/s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCORES = ("area", "mean_volume_db", "motion", "speech_fraction", "av_offset_frames", "av_offset_confidence",
          "syncnet_offset", "syncnet_confidence", "syncnet_min_dist", "aesthetic")

CHILD = """
import resource, sys, time, json
from pathlib import Path
from curation.report import RunAccounting, write_manifest, write_report
from curation.writer import Markers
root = Path(sys.argv[1])
t0 = time.time()
markers = Markers(root / "_state")
accounting = RunAccounting()
for record in markers.records():
    accounting.add(record)
write_manifest(markers.records(), accounting.manifest_schema(), root / "manifest.parquet")
summary = write_report(accounting, root / "report", {"motion": 0.5})
print(json.dumps({"seconds": time.time() - t0, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "clips": summary["clips"]}))
"""


def write_markers(root: Path, records: int, clips_per_input: int) -> None:
    from curation.writer import Markers

    markers = Markers(root / "_state")
    for i in range(0, records, clips_per_input):
        input_id = f"input{i // clips_per_input:07d}"
        uri = f"s3://bucket/videos/{input_id}.mp4"
        batch = []
        for j in range(min(clips_per_input, records - i)):
            rejected = (i + j) % 3 == 0
            batch.append({"record_type": "clip", "input_id": input_id, "uri": uri, "key": f"{input_id}_{j:05d}",
                          "clip_index": j, "num_clips": clips_per_input, "scene_index": j // 4,
                          "start_s": j * 5.04, "end_s": (j + 1) * 5.04, "status": "rejected" if rejected else "kept",
                          "reason": "low_volume" if rejected else None, "stage": "volume" if rejected else None,
                          "detail": "mean volume -71.2 dB < -60" if rejected else None, "error_type": None,
                          "error": None, "has_caption": not rejected, "source_duration_s": 300.0, "source_fps": 24.0,
                          "source_width": 1280, "source_height": 704, "source_has_audio": True,
                          "scores": {name: float(j % 7) + 0.5 for name in SCORES},
                          "shard": None if rejected else f"shard-{i // 256:06d}.tar"})
        markers.write(input_id, uri, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--clips-per-input", type=int, default=50)
    args = parser.parse_args()
    results = []
    for n in args.records:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            write_markers(Path(tmp), n, args.clips_per_input)
            made = time.time() - t0
            out = subprocess.run([sys.executable, "-c", CHILD, tmp], capture_output=True, text=True, check=True,
                                 cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["clips"] == n, result
            results.append((n, result))
            print(f"{n:>9d} records: peak RSS {result['peak_mib']:7.1f} MiB, accounting + manifest + report "
                  f"{result['seconds']:6.1f} s ({n / result['seconds']:,.0f} records/s); markers written in {made:.1f} s",
                  flush=True)
    if len(results) > 1:
        (n0, r0), (n1, r1) = results[0], results[-1]
        growth = (r1["peak_mib"] - r0["peak_mib"]) * 2**20 / (n1 - n0)
        print(f"peak RSS growth: {growth:.1f} bytes per extra record ({n0} -> {n1} records)")


if __name__ == "__main__":
    main()
