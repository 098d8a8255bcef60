"""Driver start-up cost of a curation run with many inputs: seconds from `stream_rows` being called
to its first finished row, through one stage that does nothing, on an in-process Ray cluster.

    python bench/first_row.py [--inputs 2000 20000] [--cpus 2]

Real stages take seconds per input, so what this isolates is the work Ray does before the first
input starts (building the input blocks) and the per-task overhead (the total time divided by N).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.pipeline import stream_rows  # noqa: E402
from curation.stage import Row, Stage  # noqa: E402


class PassThrough(Stage):
    name = "pass_through"

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray
    import ray.data

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print("inputs  first row (s)  all rows (s)  ms per input")
    for n in args.inputs:
        rows = [{"status": "kept", "uri": f"s3://bucket/videos/{i:07d}.mp4", "n": i} for i in range(n)]
        start = time.perf_counter()
        first = None
        count = 0
        for _ in stream_rows(rows, [PassThrough()]):
            first = first or time.perf_counter() - start
            count += 1
        total = time.perf_counter() - start
        assert count == n, f"{count} rows came back from {n}"
        print(f"{n:6d}  {first:13.2f}  {total:12.1f}  {1000 * total / n:12.1f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
