"""Peak memory of the audio_segments stage on one long source, for a few decode windows.

    python bench/audio_segments.py [--minutes 20] [--windows 60 600 100000]

Makes a long recording with ffmpeg (speech-like bursts of filtered noise between pauses, AAC in
.m4a, like a video's track), then for each `decode_window_s` runs AudioSegmentsStage on it in a
child process and prints the child's peak RSS (ru_maxrss), its wall time and the segment count.
A window longer than the source is one pass over the whole file, as the stage read it before.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from curation.config import AudioSegmentsConfig, VadConfig
from curation.stages.speech import AudioSegmentsStage
config = AudioSegmentsConfig(enabled=True, kinds=["speech", "sound"], decode_window_s=float(sys.argv[3]))
stage = AudioSegmentsStage(config, VadConfig(), sys.argv[4])
stage.setup()
start = time.perf_counter()
rows = stage.process_batch([{"input_id": "long", "uri": sys.argv[2], "path": sys.argv[2], "status": "kept"}])
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - start, "segments": len(rows) - 1}))
"""


def make_source(path: Path, minutes: float) -> Path:
    # 4 s of band-passed noise (speech band) then 2 s of quiet, repeated
    bursts = ("anoisesrc=color=pink:amplitude=0.5:r=16000,bandpass=f=800:w=1500,"
              "volume='if(lt(mod(t,6),4),1,0.01)':eval=frame")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", bursts, "-t", str(minutes * 60),
                    "-c:a", "aac", "-b:a", "64k", str(path)], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--windows", type=float, nargs="+", default=[60.0, 600.0, 100000.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = make_source(Path(tmp) / "long.m4a", args.minutes)
        print(f"source: {args.minutes:g} min\ndecode_window_s  peak RSS (MiB)  seconds  segments")
        for window in args.windows:
            out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(source), str(window),
                                  str(Path(tmp) / f"work_{window:g}")], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{window:15g}  {result['peak_mib']:14.0f}  {result['seconds']:7.1f}  {result['segments']:8d}")


if __name__ == "__main__":
    main()
