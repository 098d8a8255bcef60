"""How well the weight-free sync judges tell in-sync talking clips from desynchronised copies.

    .venv/bin/python bench/sync_accuracy.py [--clips examples/media] [--gate 3.6]

From each talking clip (default: the three shipped sample clips) it makes, with ffmpeg, the 121-frame
24 fps clip the pipeline would cut, re-encoded copies of it (CRF 32, 640 px wide, a 30 fps detour, 64 kb/s
AAC, a variable-rate source missing a tenth of its frames), copies with the audio shifted by +-120, 200,
300 and 500 ms, copies whose picture starts 200, 300 or 500 ms late (its first frame held: the sound comes
first), and copies whose audio is another clip's or its own played backwards (sound and picture
unrelated). Every copy goes through the
pipeline's `sync` stage (`curation.stages.sync.AVSyncStage`, default settings but the gate), and the
script prints one row per copy and the summary:

- in-sync clips (original and re-encodes) judged within +-3 frames and verified;
- copies shifted by >= 200 ms rejected (`av_offset`);
- unrelated sound verified (how often the gate lets noise through), and the 95th percentile of the
  confidence on unrelated sound, which is how the default gate `filters.sync.mouth.min_confidence` is set.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.config import MouthJudge, SyncFilter  # noqa: E402
from curation.stages.sync import AVSyncStage  # noqa: E402

CLIP_FRAMES, FPS = 121, 24
SECONDS = f"{CLIP_FRAMES / FPS:.6f}"
SHIFTS_MS = (-500, -300, -200, -120, 120, 200, 300, 500)
# The picture held back instead of the sound moved (a late video track, as a muxer or camera leaves it):
# the first frame is held this long, so the sound comes first.
VIDEO_DELAYS_MS = (200, 300, 500)


def ffmpeg(*args: str) -> None:
    if not Path(args[-1]).exists():  # copies in a --work folder are made once
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *args], check=True)


def cut(video_src: Path, audio_src: Path, out: Path, audio_delay_ms: float = 0.0, vf: str = "",
        audio_args: tuple[str, ...] = ("-c:a", "aac", "-b:a", "192k"), crf: int = 18, reverse_audio: bool = False) -> Path:
    """The pipeline's clip (121 frames at 24 fps, H.264 + AAC) from a video and an audio source; the audio
    delayed by `audio_delay_ms` (negative: earlier)."""
    audio_filter = ("areverse," if reverse_audio else "") + "apad"
    ffmpeg("-i", str(video_src), "-itsoffset", f"{audio_delay_ms / 1000:.4f}", "-i", str(audio_src),
           "-map", "0:v:0", "-map", "1:a:0", "-vf", f"fps={FPS},{vf + ',' if vf else ''}scale=trunc(iw/2)*2:trunc(ih/2)*2,"
           "format=yuv420p", "-frames:v", str(CLIP_FRAMES), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
           "-af", audio_filter, "-t", SECONDS, *audio_args, str(out))
    return out


def variants(clips: list[Path], work: Path) -> list[tuple[str, str, int | None, Path]]:
    """(clip, variant, true offset in frames (None: unrelated audio), file)."""
    made = []
    for clip in clips:
        name = clip.stem
        made.append((name, "original", 0, cut(clip, clip, work / f"{name}-orig.mp4")))
        made.append((name, "crf32", 0, cut(clip, clip, work / f"{name}-crf32.mp4", crf=32)))
        made.append((name, "640px", 0, cut(clip, clip, work / f"{name}-640.mp4", vf="scale=640:-2")))
        made.append((name, "aac64k", 0, cut(clip, clip, work / f"{name}-aac64.mp4", audio_args=("-c:a", "aac", "-b:a", "64k"))))
        thirty = work / f"{name}-30fps.mp4"
        ffmpeg("-i", str(clip), "-vf", "fps=30", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac",
               str(thirty))
        made.append((name, "via 30 fps", 0, cut(thirty, thirty, work / f"{name}-30to24.mp4")))
        # A variable-rate source, as phones record in low light: a tenth of the frames missing at random
        # (ffmpeg's random(0) is seeded, so the same ones each run); cutting at 24 fps repeats the frame before.
        dropped = work / f"{name}-dropped.mp4"
        ffmpeg("-i", str(clip), "-vf", "select='lt(random(0),0.9)'", "-fps_mode", "vfr", "-c:v", "libx264", "-preset",
               "veryfast", "-crf", "18", "-c:a", "copy", str(dropped))
        made.append((name, "10 % frames dropped", 0, cut(dropped, dropped, work / f"{name}-dropped-to24.mp4")))
        for ms in SHIFTS_MS:
            # audio delayed by ms reads, in SyncNet's sign, as -ms of frames
            made.append((name, f"audio {ms:+d} ms", -round(ms * FPS / 1000),
                         cut(clip, clip, work / f"{name}-shift{ms:+d}.mp4", audio_delay_ms=ms)))
        for ms in VIDEO_DELAYS_MS:
            made.append((name, f"video +{ms} ms", round(ms * FPS / 1000),
                         cut(clip, clip, work / f"{name}-video+{ms}.mp4",
                             vf=f"tpad=start_duration={ms / 1000}:start_mode=clone")))
        made.append((name, "audio reversed", None, cut(clip, clip, work / f"{name}-rev.mp4", reverse_audio=True)))
        for other in clips:
            if other != clip:
                made.append((name, f"audio of {other.stem[:12]}", None,
                             cut(clip, other, work / f"{name}-with-{other.stem}.mp4")))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", nargs="+", default=[str(REPO / "examples" / "media")],
                        help="talking clips (files or folders of .mp4) whose sound is in sync")
    parser.add_argument("--work", type=Path, default=None, help="keep the copies here (made once, reused)")
    parser.add_argument("--gate", type=float, default=MouthJudge().min_confidence,
                        help="filters.sync.mouth.min_confidence to judge with")
    args = parser.parse_args()
    clips = sorted(p for c in args.clips for p in ([Path(c)] if Path(c).is_file() else Path(c).glob("*.mp4")))
    stage = AVSyncStage(SyncFilter(mouth=MouthJudge(min_confidence=args.gate)))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        made = variants(clips, work)
        print(f"{len(made)} copies of {len(clips)} clips made in {time.time() - t0:.0f} s; judging with gate "
              f"{args.gate}\n")
        print("| clip | variant | true offset | judge | offset | confidence | verified | outcome |")
        print("|---|---|---|---|---|---|---|---|")
        results = []
        t0 = time.time()
        for clip, variant, truth, path in made:
            [row] = stage.process_batch([{"key": path.stem, "mp4_path": str(path), "scores": {}}])
            s = row["scores"]
            outcome = row.get("reason") or "kept"
            results.append((variant, truth, row["sync_method"], s.get("sync_offset"), s.get("sync_confidence"),
                            row["sync_verified"], outcome))
            print(f"| {clip[:24]} | {variant} | {'-' if truth is None else truth} | {row['sync_method']} | "
                  f"{s.get('sync_offset', '-')} | {s.get('sync_confidence', '-')} | {row['sync_verified']} | {outcome} |")
        seconds = time.time() - t0
    in_sync = [r for r in results if r[1] == 0]
    shifted = [r for r in results if r[1] is not None and abs(r[1]) >= round(0.2 * FPS)]
    unrelated = [r for r in results if r[1] is None]
    ok = sum(r[5] and r[3] is not None and abs(r[3]) <= 3 for r in in_sync)
    rejected = sum(r[6] == "av_offset" for r in shifted)
    noise = [r[4] for r in unrelated if r[4] is not None]
    print(f"\njudged {len(results)} clips in {seconds:.0f} s ({seconds / len(results):.1f} s per clip)")
    print(f"in-sync clips within +-3 frames and verified: {ok}/{len(in_sync)}")
    print(f"copies shifted >= 200 ms rejected: {rejected}/{len(shifted)}")
    print(f"unrelated sound verified: {sum(r[5] for r in unrelated)}/{len(unrelated)}; its confidence, 95th "
          f"percentile: {np.percentile(noise, 95):.2f}" if noise else "no unrelated copy reached a judge")


if __name__ == "__main__":
    main()
