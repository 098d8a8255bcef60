"""Scene detection on sources with known cuts, dissolves, fades, wipes and flashes: the old detector against the new.

    python bench/scenes.py [--out DIR] [--long-minutes 0]

Makes each source with ffmpeg (synthetic ones 320x180 at 24 fps from lavfi testsrc2, its colour negative and
smptebars; real ones from the three sample clips in examples/media at 1280x704), whose transitions are known
from the construction, then runs
  old: PySceneDetect ContentDetector alone (threshold 27, min_scene_len 15, OpenCV backend, auto-downscale),
       what the scenes stage did before, and
  new: curation.stages.scenes.analyze_scenes with configs/curation.yaml's defaults,
cuts both scene lists into back-to-back 121-frame clip windows (`clip_windows`, what the stage emits) and
prints, per source: the true transitions, what each detector found, whether any clip window holds a frame
of a transition (or both sides of a cut), whether a continuous shot was split (a cut or span found where
there is none), and for the new detector how many frames of clean footage the transition spans took.

Frame numbers are at 24 fps; a gradual transition is given as the first and last frame that is a blend
(xfade's frames strictly between offset and offset + duration). --long-minutes N also times the new
detector on an N-minute testsrc2 source and reports its peak memory (a child process's ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from curation.config import ClipConfig, ScenesConfig  # noqa: E402
from curation.stages.scenes import analyze_scenes, clip_windows  # noqa: E402

MEDIA = REPO / "examples" / "media"
REAL = {"kitchen": MEDIA / "kitchen_two_women_704x1280.mp4", "stage": MEDIA / "stage_three_men_704x1280.mp4",
        "closeup": MEDIA / "two_men_closeup_704x1280.mp4"}
FPS = 24
SIZE = "320x180"
A = f"testsrc2=size={SIZE}:rate={FPS}"
NEG = "negate,hue=h=120"  # scene B: testsrc2's colour negative, hue-shifted (moves like A, looks unlike it)
ENC = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]


@dataclass
class Source:
    name: str
    what: str
    args: list[str]  # ffmpeg arguments before the encoder options and output path
    cuts: list[int] = field(default_factory=list)  # first frame of each new shot after a hard cut
    blends: list[tuple[int, int]] = field(default_factory=list)  # (first, last) blended frames


def _ff(args: list[str], out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, *ENC, str(out)], check=True)
    return out


def _xfade(kind: str, duration: float, offset: float, length: float) -> list[str]:
    graph = (f"[0:v]format=yuv420p,settb=AVTB,setsar=1[a];[1:v]{NEG},format=yuv420p,settb=AVTB,setsar=1[b];"
             f"[a][b]xfade=transition={kind}:duration={duration}:offset={offset}[v]")
    return ["-f", "lavfi", "-t", str(length), "-i", A, "-f", "lavfi", "-t", str(length), "-i", A,
            "-filter_complex", graph, "-map", "[v]"]


def _real_crop(name: str, position: str) -> list[str]:
    """A sample clip scaled 1.5x and cropped back to 1280x704 at `position` (ffmpeg crop x/y expressions)."""
    return ["-i", str(REAL[name]), "-vf", f"scale=1920:1056,crop=1280:704:{position}"]


def _real_xfade(a: str, b: str, kind: str, duration: float, offset: float) -> list[str]:
    prep = "scale=1280:704,fps=24,format=yuv420p,settb=AVTB,setsar=1"
    graph = f"[0:v]{prep}[a];[1:v]{prep}[b];[a][b]xfade=transition={kind}:duration={duration}:offset={offset}[v]"
    return ["-i", str(REAL[a]), "-i", str(REAL[b]), "-filter_complex", graph, "-map", "[v]"]


def _blend(offset: float, duration: float) -> tuple[int, int]:
    return round(offset * FPS) + 1, round((offset + duration) * FPS) - 1


def flash(color: str, frames: str) -> str:
    """Fill the whole picture with `color` on the frames where the ffmpeg expression `frames` holds."""
    return f"drawbox=x=0:y=0:w=iw:h=ih:color={color}:t=fill:enable='{frames}'"


def sources() -> list[Source]:
    return [
        Source("hard_cut", "testsrc2 6 s, cut to its negative 6 s",
               ["-f", "lavfi", "-i", f"{A}:duration=6", "-f", "lavfi", "-i", f"{A}:duration=6", "-filter_complex",
                f"[1:v]{NEG}[b];[0:v][b]concat=n=2:v=1:a=0[v]", "-map", "[v]"], cuts=[144]),
        Source("short_shot", "testsrc2 6 s, cut to the negative for 9 frames, cut to smptebars 6 s",
               ["-f", "lavfi", "-i", f"{A}:duration=6", "-f", "lavfi", "-i", f"{A}:duration=0.375", "-f", "lavfi",
                "-i", f"smptebars=size={SIZE}:rate={FPS}:duration=6", "-filter_complex",
                f"[1:v]{NEG}[b];[0:v][b][2:v]concat=n=3:v=1:a=0[v]", "-map", "[v]"], cuts=[144, 153]),
        Source("dissolve_0.25s", "testsrc2 -> negative, xfade fade 0.25 s at 6 s", _xfade("fade", 0.25, 6, 7),
               blends=[_blend(6, 0.25)]),
        Source("dissolve_0.5s", "same, 0.5 s", _xfade("fade", 0.5, 6, 7), blends=[_blend(6, 0.5)]),
        Source("dissolve_1s", "same, 1 s", _xfade("fade", 1, 6, 7), blends=[_blend(6, 1)]),
        Source("dissolve_2s", "same, 2 s", _xfade("fade", 2, 6, 8), blends=[_blend(6, 2)]),
        Source("dissolve_3s", "same, 3 s", _xfade("fade", 3, 6, 9), blends=[_blend(6, 3)]),
        Source("fadeblack_1s", "xfade fadeblack 1 s at 6 s", _xfade("fadeblack", 1, 6, 7), blends=[_blend(6, 1)]),
        Source("fadewhite_1s", "xfade fadewhite 1 s at 6 s", _xfade("fadewhite", 1, 6, 7), blends=[_blend(6, 1)]),
        Source("fade_in_out", "testsrc2 12 s, fade in from black 1 s, out to black 1 s",
               ["-f", "lavfi", "-i", f"{A}:duration=12", "-vf", "fade=t=in:st=0:d=1,fade=t=out:st=11:d=1"],
               blends=[(0, 23), (264, 287)]),
        Source("wipe_1s", "xfade wipeleft 1 s at 6 s", _xfade("wipeleft", 1, 6, 7), blends=[_blend(6, 1)]),
        Source("flash_1f", "testsrc2 12 s, frame 144 white",
               ["-f", "lavfi", "-i", f"{A}:duration=12", "-vf", flash("white", "eq(n,144)")]),
        Source("flash_2f", "testsrc2 12 s, frames 144-145 white",
               ["-f", "lavfi", "-i", f"{A}:duration=12", "-vf", flash("white", "between(n,144,145)")]),
        Source("blackout_2f", "testsrc2 12 s, frames 144-145 black",
               ["-f", "lavfi", "-i", f"{A}:duration=12", "-vf", flash("black", "between(n,144,145)")]),
        Source("dip_to_black", "testsrc2 6 s, cut to black for 12 frames, cut to testsrc2 darkened (mean level 53) 6 s",
               ["-f", "lavfi", "-i", f"{A}:duration=6", "-f", "lavfi", "-i", f"color=black:size={SIZE}:rate={FPS}:"
                "duration=0.5", "-f", "lavfi", "-i", f"{A}:duration=6", "-filter_complex",
                "[2:v]eq=brightness=-0.45:contrast=0.5[d];[0:v][1:v][d]concat=n=3:v=1:a=0[v]", "-map", "[v]"],
               cuts=[144, 156], blends=[(144, 155)]),
        Source("testsrc2", "testsrc2 12 s (moving pattern, one shot)", ["-f", "lavfi", "-i", f"{A}:duration=12"]),
        Source("brightness_ramp", "testsrc2 12 s brightening by 0.3 (of 1) between 5 and 6 s (lights coming on)",
               ["-f", "lavfi", "-i", f"{A}:duration=12", "-vf", "eq=brightness='-0.3*clip(6-t,0,1)':eval=frame"]),
        Source("pan", "320x180 crop panning 60 px/s over 1280x720 testsrc2",
               ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}:duration=12",
                "-vf", "crop=320:180:x='t*60':y='t*20'"]),
        Source("pan_fast", "same, 80 px/s (a quarter frame a second)",
               ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}:duration=12",
                "-vf", "crop=320:180:x='t*80':y='t*30'"]),
        *[Source(f"real_{k}", f"examples/media {p.name}", ["-i", str(p)]) for k, p in REAL.items()],
        Source("real_pan", "kitchen at 1.5x, 1280x704 crop panning 120 px/s", _real_crop("kitchen", "x='t*120':y=200")),
        Source("real_zoom", "closeup zooming in 1.0 -> 1.5x over 5 s",
               ["-i", str(REAL["closeup"]), "-vf", "zoompan=z='1+0.1*in/24':d=1:x='iw/2-iw/zoom/2':"
                "y='ih/2-ih/zoom/2':s=1280x704:fps=24"]),
        Source("real_shake", "stage at 1.5x, crop shaking +-12 px at ~1 Hz (handheld)",
               _real_crop("stage", "x='320+12*sin(6*t)':y='176+12*sin(7*t+1)'")),
        Source("real_whip_shake", "stage at 1.5x, crop shaking +-40 px at 2-3 Hz (up to 680 px/s)",
               _real_crop("stage", "x='320+40*sin(13*t)':y='176+40*sin(17*t+1)'")),
        Source("real_brighten", "kitchen brightening by 0.15 (of 1) between 2 and 3 s (lights coming on)",
               ["-i", str(REAL["kitchen"]), "-vf", "eq=brightness='-0.15*clip(3-t,0,1)':eval=frame"]),
        Source("real_flash_1f", "kitchen, frame 60 white", ["-i", str(REAL["kitchen"]), "-vf",
                                                            flash("white", "eq(n,60)")]),
        Source("real_dissolve_1s", "kitchen -> stage, xfade fade 1 s at 4 s",
               _real_xfade("kitchen", "stage", "fade", 1, 4), blends=[_blend(4, 1)]),
        Source("real_dissolve_0.5s", "closeup -> kitchen, xfade fade 0.5 s at 4 s",
               _real_xfade("closeup", "kitchen", "fade", 0.5, 4), blends=[_blend(4, 0.5)]),
        Source("real_fadeblack_1s", "kitchen -> stage, xfade fadeblack 1 s at 4 s",
               _real_xfade("kitchen", "stage", "fadeblack", 1, 4), blends=[_blend(4, 1)]),
        Source("real_wipe_1s", "closeup -> kitchen, xfade wipeleft 1 s at 4 s",
               _real_xfade("closeup", "kitchen", "wipeleft", 1, 4), blends=[_blend(4, 1)]),
    ]


def old_scenes(path: Path) -> list[tuple[float, float]]:
    """The scenes stage before: ContentDetector alone through OpenCV; no cut is one scene of the whole video."""
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(str(path), backend="opencv")
    manager = SceneManager()
    manager.auto_downscale = True
    manager.add_detector(ContentDetector(threshold=27.0, min_scene_len=15))
    manager.detect_scenes(video=video)
    scenes = [(s.seconds, e.seconds) for s, e in manager.get_scene_list()]
    return scenes or [(0.0, video.duration.seconds)]


def _frames(window: tuple[int, float, float]) -> range:
    first = round(window[1] * FPS)
    return range(first, first + ClipConfig().num_frames)


def crosses(windows: list[tuple[int, float, float]], src: Source) -> int:
    """Clip windows that hold a blended frame or both sides of a cut."""
    bad = 0
    for w in windows:
        frames = _frames(w)
        if any(c - 1 in frames and c in frames for c in src.cuts) or \
                any(frames.start <= last and first < frames.stop for first, last in src.blends):
            bad += 1
    return bad


def split(boundaries: list[tuple[int, int]], src: Source) -> bool:
    """A boundary (cut c as (c, c), span as (first, last)) that touches no true cut or transition."""
    truth = [(c - 1, c) for c in src.cuts] + [(a - 1, b + 1) for a, b in src.blends]
    return any(not any(first <= hi + 1 and lo - 1 <= last for lo, hi in truth) for first, last in boundaries)


def _fmt_spans(spans: list[tuple[int, int]], most: int = 8) -> str:
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in spans]
    if len(text) > most:
        return " ".join(text[:most]) + f" ... ({len(text)} in all)"
    return " ".join(text) or "-"


def _scenes_config() -> ScenesConfig:
    return ScenesConfig.model_validate(yaml.safe_load((REPO / "configs" / "curation.yaml").read_text())["scenes"])


def run(out: Path) -> list[dict]:
    config = _scenes_config()
    clip = ClipConfig()
    clip_s = clip.num_frames / clip.fps
    rows = []
    for src in sources():
        path = _ff(src.args, out / f"{src.name}.mp4")
        t0 = time.perf_counter()
        old = old_scenes(path)
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = analyze_scenes(path, config, FPS)
        t_new = time.perf_counter() - t0
        old_bounds = [(round(s * FPS), round(s * FPS)) for s, _ in old[1:]]
        new_bounds = [(c, c) for c in new.cuts] + list(new.transitions)
        old_w, new_w = clip_windows(old, clip_s, None), clip_windows(new.scenes, clip_s, None)
        truth_frames = set()
        for a, b in src.blends:
            truth_frames |= set(range(a, b + 1))
        taken = sum(1 for a, b in new.transitions for f in range(a, b + 1) if f not in truth_frames)
        rows.append({
            "source": src.name, "what": src.what, "frames": new.num_frames,
            "truth": _fmt_spans([(c, c) for c in src.cuts] + src.blends),
            "old_found": _fmt_spans(old_bounds), "old_clips": len(old_w), "old_cross": crosses(old_w, src),
            "old_split": split(old_bounds, src),
            "new_found": _fmt_spans(sorted(new_bounds)), "new_flashes": _fmt_spans(new.flashes),
            "new_clips": len(new_w), "new_cross": crosses(new_w, src), "new_split": split(new_bounds, src),
            "new_extra_frames": taken, "old_ms_per_frame": 1000 * t_old / new.num_frames,
            "new_ms_per_frame": 1000 * t_new / new.num_frames,
        })
    return rows


def print_table(rows: list[dict]) -> None:
    yn = lambda b: "**yes**" if b else "no"  # noqa: E731
    print("| source | true cuts / blended frames | old: found | old: clips (crossing) | old: split shot | "
          "new: cuts / spans found | new: flashes | new: clips (crossing) | new: split shot | "
          "new: clean frames dropped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['truth']} | {r['old_found']} | {r['old_clips']} ({r['old_cross']}) | "
              f"{yn(r['old_split'])} | {r['new_found']} | {r['new_flashes']} | {r['new_clips']} ({r['new_cross']}) | "
              f"{yn(r['new_split'])} | {r['new_extra_frames']} |")
    print()
    print("| source | what |\n|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['what']} ({r['frames']} frames) |")
    old_ms = sum(r["old_ms_per_frame"] * r["frames"] for r in rows) / sum(r["frames"] for r in rows)
    new_ms = sum(r["new_ms_per_frame"] * r["frames"] for r in rows) / sum(r["frames"] for r in rows)
    print(f"\nwall per frame on these short sources, ffprobe/ffmpeg/OpenCV start-up and decode included: "
          f"old {old_ms:.2f} ms, new {new_ms:.2f} ms (--long-minutes gives the steady rate)")


LONG_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from curation.config import ScenesConfig
from curation.stages.scenes import analyze_scenes
t0 = time.perf_counter()
a = analyze_scenes(sys.argv[2], ScenesConfig(), 24)
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "frames": a.num_frames, "cuts": len(a.cuts),
                  "transitions": len(a.transitions), "peak_mib": peak_mib}))
"""


def long_run(out: Path, minutes: float) -> None:
    path = out / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x360:rate={FPS}:duration={minutes * 60}", *ENC, str(path)], check=True)
    res = subprocess.run([sys.executable, "-c", LONG_CHILD, str(REPO), str(path)], capture_output=True, text=True,
                         check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"\nlong source: {minutes:g} min testsrc2 640x360, {r['frames']} frames: {r['seconds']:.1f} s "
          f"({1000 * r['seconds'] / r['frames']:.2f} ms/frame, decode included), peak RSS {r['peak_mib']:.0f} MiB, "
          f"{r['cuts']} cuts, {r['transitions']} transitions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the sources here (default: a temporary directory)")
    parser.add_argument("--long-minutes", type=float, default=0.0)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = run(out)
        print_table(rows)
        if args.json:
            print(json.dumps(rows, indent=1))
        if args.long_minutes > 0:
            long_run(out, args.long_minutes)


if __name__ == "__main__":
    main()
