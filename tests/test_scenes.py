"""Scene cuts that handle dissolves, fades and flashes: clips made with ffmpeg whose transitions are known.

Every assertion is on the construction (xfade's offset and duration, the frame that was painted white), not
on what the detector reported, and goes through the `CutClips` stage: the clip windows checked are the ones
the pipeline transcodes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLE_CLIPS
from curation.config import ClipConfig, CurationConfig, ScenesConfig
from curation.stages.scenes import CutClips, analyze_scenes, scene_frames

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

REAL_CLIPS = list(SAMPLE_CLIPS)
FPS = 24
CLIP_S = 121 / FPS
SIZE = "192x144"
A = f"testsrc2=size={SIZE}:rate={FPS}"
NEG = "negate,hue=h=120"  # the second shot: testsrc2's colour negative, moving like the first


def _ffmpeg(args: list[str], out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _xfade(out: Path, kind: str, offset: float, duration: float, length: float) -> Path:
    """Shot A for `offset` s, an xfade `kind` of `duration` s into shot B, B until the end (offset + length)."""
    graph = (f"[0:v]format=yuv420p,settb=AVTB,setsar=1[a];[1:v]{NEG},format=yuv420p,settb=AVTB,setsar=1[b];"
             f"[a][b]xfade=transition={kind}:duration={duration}:offset={offset}[v]")
    return _ffmpeg(["-f", "lavfi", "-t", str(length), "-i", A, "-f", "lavfi", "-t", str(length), "-i", A,
                    "-filter_complex", graph, "-map", "[v]"], out)


def _paint(out: Path, color: str, frames: str, seconds: float = 12.0) -> Path:
    """testsrc2 with the whole picture `color` on the frames where the ffmpeg expression `frames` holds."""
    return _ffmpeg(["-f", "lavfi", "-i", f"{A}:duration={seconds}", "-vf",
                    f"drawbox=x=0:y=0:w=iw:h=ih:color={color}:t=fill:enable='{frames}'"], out)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scenes")
    return {
        # 6 s of A, a 1 s dissolve (blended frames strictly inside 6-7 s), 6 s of B
        "dissolve": _xfade(d / "dissolve.mp4", "fade", 6.0, 1.0, 7.0),
        "fadeblack": _xfade(d / "fadeblack.mp4", "fadeblack", 6.0, 1.0, 7.0),
        # one 12 s shot, frame 144 (6 s) white / frames 144-145 white
        "flash": _paint(d / "flash.mp4", "white", "eq(n,144)"),
        "flash2": _paint(d / "flash2.mp4", "white", "between(n,144,145)"),
        "hard_cut": _ffmpeg(["-f", "lavfi", "-i", f"{A}:duration=6", "-f", "lavfi", "-i", f"{A}:duration=6",
                             "-filter_complex", f"[1:v]{NEG}[b];[0:v][b]concat=n=2:v=1:a=0[v]", "-map", "[v]"],
                            d / "hard_cut.mp4"),
        # 6 s of A, a 9-frame shot of B, 6 s of smptebars: cuts at frames 144 and 153
        "short_shot": _ffmpeg(["-f", "lavfi", "-i", f"{A}:duration=6", "-f", "lavfi", "-i", f"{A}:duration=0.375",
                               "-f", "lavfi", "-i", f"smptebars=size={SIZE}:rate={FPS}:duration=6",
                               "-filter_complex", f"[1:v]{NEG}[b];[0:v][b][2:v]concat=n=3:v=1:a=0[v]",
                               "-map", "[v]"], d / "short_shot.mp4"),
        "testsrc2": _ffmpeg(["-f", "lavfi", "-i", f"{A}:duration=12"], d / "testsrc2.mp4"),
        # a 192x144 window panning 40 px/s right and 15 px/s down over a 1280x720 testsrc2
        "pan": _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}:duration=12",
                        "-vf", "crop=192:144:x='t*40':y='t*15'"], d / "pan.mp4"),
    }


def _clips(path: Path, duration: float, config: ScenesConfig | None = None) -> list[dict]:
    stage = CutClips(config or ScenesConfig(), ClipConfig())
    row = {"input_id": "x", "uri": str(path), "path": str(path), "status": "kept", "probe": {"duration_s": duration}}
    out = stage.process_batch([row])
    assert all(r.get("status") == "kept" and r["record_type"] == "clip" for r in out), out
    return out


def _holds(clip: dict, first_s: float, last_s: float) -> bool:
    """Whether the clip's frames (start_s + k/24, k < 121) include a time strictly between first_s and last_s."""
    first_frame, last_frame = clip["start_s"], clip["end_s"] - 1 / FPS
    return first_frame < last_s - 1e-6 and last_frame > first_s + 1e-6


def _crosses(clip: dict, cut_s: float) -> bool:
    """Whether the clip holds frames on both sides of a cut at cut_s (the new shot's first frame)."""
    return clip["start_s"] < cut_s - 1e-6 and clip["end_s"] > cut_s + 1e-6


@pytest.mark.parametrize("name", ["dissolve", "fadeblack"])
def test_no_clip_holds_a_frame_of_a_gradual_transition(media: dict, name: str) -> None:
    clips = _clips(media[name], 13.0)
    for clip in clips:
        assert not _holds(clip, 6.0, 7.0), f"{name}: clip {clip['start_s']}-{clip['end_s']} holds part of 6-7 s"
    assert any(c["end_s"] <= 6.0 + 1e-6 for c in clips), f"{name}: no clip before the transition: {clips}"
    assert any(c["start_s"] >= 7.0 - 1e-6 for c in clips), f"{name}: no clip after the transition: {clips}"
    assert {c["scene_index"] for c in clips} == {0, 1} and clips[0]["num_scenes"] == 2


@pytest.mark.parametrize("name", ["flash", "flash2"])
def test_a_flash_does_not_split_the_shot(media: dict, name: str) -> None:
    clips = _clips(media[name], 12.0)
    assert [(c["scene_index"], c["num_scenes"]) for c in clips] == [(0, 1), (0, 1)], clips
    assert clips[0]["start_s"] == 0.0 and abs(clips[1]["start_s"] - CLIP_S) < 1e-6, "two back-to-back clips"


def test_flash_filter_off_splits(media: dict) -> None:
    """With max_flash_frames 0 the white frame is two cuts: the flash handling is what keeps the shot whole."""
    analysis = analyze_scenes(media["flash"], ScenesConfig(max_flash_frames=0), FPS)
    assert analysis.cuts == [144, 145] and not analysis.flashes


def test_a_hard_cut_still_splits(media: dict) -> None:
    clips = _clips(media["hard_cut"], 12.0)
    assert len(clips) == 2 and [c["scene_index"] for c in clips] == [0, 1]
    assert not any(_crosses(c, 6.0) for c in clips)
    assert abs(clips[1]["start_s"] - 6.0) < 1 / FPS + 1e-6, "the second scene starts at the cut"


def test_a_short_shot_between_cuts_keeps_both_cuts(media: dict) -> None:
    """PySceneDetect's min_scene_len merging dropped the cut out of a 9-frame shot; the clip after crossed it."""
    clips = _clips(media["short_shot"], 12.375)
    for cut_s in (6.0, 6.375):
        assert not any(_crosses(c, cut_s) for c in clips), (cut_s, clips)
    assert len(clips) == 2


@pytest.mark.parametrize("name", ["testsrc2", "pan"])
def test_continuous_synthetic_shot_is_one_scene(media: dict, name: str) -> None:
    analysis = analyze_scenes(media[name], ScenesConfig(), FPS)
    assert (analysis.cuts, analysis.transitions) == ([], []), name
    assert analysis.scene_frames == [(0, 288)]


@pytest.mark.parametrize("path", REAL_CLIPS, ids=lambda p: p.stem)
def test_real_talking_clip_is_one_scene(path: Path) -> None:
    analysis = analyze_scenes(path, ScenesConfig(), FPS)
    assert (analysis.cuts, analysis.transitions, analysis.flashes) == ([], [], []), path.name
    assert analysis.scene_frames == [(0, analysis.num_frames)] and analysis.num_frames >= 121


def test_non_utf8_file_name(media: dict, tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/dissolve-\xff\xfe.mp4"))
    shutil.copyfile(media["dissolve"], odd)
    clips = _clips(odd, 13.0)
    assert len(clips) == 2 and not any(_holds(c, 6.0, 7.0) for c in clips)


def test_scene_frames_leave_out_transitions_and_split_at_cuts() -> None:
    assert scene_frames(100, [], []) == [(0, 100)]
    assert scene_frames(100, [40], [(10, 19), (60, 99)]) == [(0, 10), (20, 40), (40, 60)]
    assert scene_frames(100, [0, 100, 50], [(0, 4)]) == [(5, 50), (50, 100)]


def test_scenes_config_keys_are_checked() -> None:
    config = CurationConfig.model_validate({"inputs": {"paths": ["x"]}})
    assert config.scenes.max_flash_frames == 3 and config.scenes.threshold == 27.0
    for bad in ({"max_flash_frame": 2}, {"min_scene_len_frames": 15}, {"blend_max_residual": 0.6}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CurationConfig.model_validate({"inputs": {"paths": ["x"]}, "scenes": bad})
