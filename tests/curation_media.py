"""Small synthetic media for the curation tests, made with ffmpeg's lavfi sources (seconds to build)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from curation.stage import Resources, Stage

REPO = Path(__file__).resolve().parent.parent

# name -> (ffmpeg input args, output args, what the pipeline should do with it)
_SIZE = "192x144"  # 27,648 px: above the tests' min_area, far below the paper's 720*720


def _ffmpeg(args: list[str], out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, str(out)], check=True)
    return out


def _av(video: str, audio: str, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-t", str(seconds), "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]


def make_synthetic_media(directory: Path) -> dict[str, Path]:
    """Write the test inputs; return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    sine = "sine=frequency=440:sample_rate=44100"
    files = {
        # moving pattern with a tone: one clip, kept
        "moving": _ffmpeg(_av(f"testsrc2=size={_SIZE}:rate=24", sine, 5.5), directory / "moving.mp4"),
        # a still colour: cut and transcoded, then rejected as static
        "static": _ffmpeg(_av(f"color=c=teal:size={_SIZE}:rate=24", sine, 5.5), directory / "static.mp4"),
        # moving but digitally silent: rejected by the volume filter
        "silent": _ffmpeg(_av(f"testsrc2=size={_SIZE}:rate=24", "anullsrc=r=44100:cl=stereo", 5.5),
                          directory / "silent.mp4"),
        # too small for the area filter
        "tiny": _ffmpeg(_av("testsrc2=size=64x48:rate=24", sine, 5.5), directory / "tiny.mp4"),
        # shorter than one 121-frame clip
        "short": _ffmpeg(_av(f"testsrc2=size={_SIZE}:rate=24", sine, 3.0), directory / "short.mp4"),
        # no video stream at all
        "audio_only": _ffmpeg(["-f", "lavfi", "-i", sine, "-t", "3", "-c:a", "aac"], directory / "audio_only.m4v"),
        # video without an audio track
        "no_audio": _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={_SIZE}:rate=24", "-t", "5.5", "-c:v", "libx264",
                             "-preset", "ultrafast", "-pix_fmt", "yuv420p"], directory / "no_audio.mp4"),
        # a hard cut at 6 s between two moving scenes: two clips, neither crosses the cut
        "two_scenes": _two_scenes(directory / "two_scenes.mp4"),
    }
    corrupt = directory / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(20_000))
    files["corrupt"] = corrupt
    return files


def _two_scenes(out: Path) -> Path:
    graph = (f"testsrc2=size={_SIZE}:rate=24:duration=6[a];"
             f"testsrc2=size={_SIZE}:rate=24:duration=6,negate,hue=h=120[b];[a][b]concat=n=2:v=1:a=0[v]")
    return _ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=12",
                    "-filter_complex", graph, "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "12"], out)


# What each synthetic input must end as: (status, stage, reason) per clip, or for the whole input.
EXPECTED = {
    "moving": [("kept", None, None)],
    "static": [("rejected", "motion", "static")],
    "silent": [("rejected", "volume", "low_volume")],
    "tiny": [("rejected", "area", "low_area")],
    "short": [("rejected", "scenes", "too_short")],
    "audio_only": [("rejected", "probe", "no_video_stream")],
    "no_audio": [("rejected", "probe", "no_audio_stream")],
    "two_scenes": [("kept", None, None), ("kept", None, None)],
    "corrupt": [("rejected", "probe", "not_media")],
}


@contextlib.contextmanager
def local_ray_cluster() -> Iterator[None]:
    """An in-process Ray cluster of 2 CPUs whose workers can import the test stages of this module."""
    paths = (str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture
def local_ray() -> Iterator[None]:
    """`local_ray_cluster` for one test (gone before the next, e.g. one that starts its own cluster)."""
    with local_ray_cluster():
        yield


# Stages for the Ray tests; defined here (not in the test module) so Ray workers, which get tests/
# on PYTHONPATH, can import them.
class TaskOfEachRow(Stage):
    """Records which Ray task ran each row, for the test that inputs are not processed in packs."""

    name = "task_of_each_row"

    def process_batch(self, rows):
        return [{**r, "task_id": ray.get_runtime_context().get_task_id()} for r in rows]


class Hang(Stage):
    """Never finishes a batch in a test's time: stands for a hung decoder or model endpoint."""

    name = "hang"

    def process_batch(self, rows):
        time.sleep(600)
        return rows
