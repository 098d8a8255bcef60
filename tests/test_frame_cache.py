"""The frame cache transcode writes beside each clip: the stages that read frames decide the same from it as
from the clip, it never reaches a shard, and a missing or damaged one falls back to decoding the clip."""
from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from curation.collector import _remove_work_files
from curation.config import ClipConfig, MotionFilter, SyncFilter, TranscodeConfig
from curation.stages.motion import MotionFilterStage
from curation.stages.package import PackageSamples
from curation.stages.sync import AVSyncStage
from curation.stages.transcode import TranscodeClips
from ovi_pl.media.frames import frame_source, read_frames, video_info

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

SIZE = (320, 176)
CACHE_WIDTH = 160  # narrower than the clip, so reading the cache scales as reading the clip does


def _source(path: Path, video: str) -> Path:
    # A 12 Hz click track over the picture: the onset judge has onsets to line up with motion.
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"{video}size={SIZE[0]}x{SIZE[1]}:rate=24",
                    "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100,volume='if(lt(mod(t,0.5),0.04),1,0)':eval=frame",
                    "-t", "5.5", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """name -> transcoded row with a frame cache, for a moving pattern and a still colour."""
    tmp = tmp_path_factory.mktemp("frame_cache")
    stage = TranscodeClips(TranscodeConfig(frame_cache_width=CACHE_WIDTH), ClipConfig(), str(tmp / "clips"))
    rows = {}
    for name, video in (("moving", "testsrc2="), ("still", "color=c=teal:")):
        source = _source(tmp / f"{name}.mp4", video)
        row = {"key": f"src-{name}", "path": str(source), "start_s": 0.0, "status": "kept",
               "probe": {"has_audio": True, "width": SIZE[0], "height": SIZE[1]}}
        (rows[name],) = stage.process_batch([row])
    return rows


def _without_cache(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "frames_path"}


def test_transcode_writes_a_small_cache_of_the_clips_frames(transcoded: dict[str, dict]) -> None:
    row = transcoded["moving"]
    info = video_info(row["frames_path"])
    assert (info.width, info.num_frames, info.fps) == (CACHE_WIDTH, 121, 24.0)
    cached = read_frames(row["frames_path"], pix_fmt="gray").astype(np.float32)
    clip = read_frames(row["mp4_path"], width=CACHE_WIDTH, pix_fmt="gray").astype(np.float32)
    assert cached.shape == clip.shape == (121, 88, 160)
    # The same frames (before H.264 and MJPEG each lose a little): a few grey levels apart on average,
    # and frame i is nearer clip frame i than clip frame i+1 (no shift).
    assert np.abs(cached - clip).mean() < 4.0
    assert np.abs(cached[:-1] - clip[:-1]).mean() < np.abs(cached[:-1] - clip[1:]).mean()
    assert Path(row["frames_path"]).stat().st_size < Path(row["mp4_path"]).stat().st_size * 4


def test_motion_and_sync_judge_the_same_from_the_cache(transcoded: dict[str, dict]) -> None:
    motion = MotionFilterStage(MotionFilter(resize_width=96))
    # No face in these clips: the onset judge decides (the mouth judge reads the clip, not the cache).
    sync = AVSyncStage(SyncFilter(mouth={"enabled": False}))
    for name, row in transcoded.items():
        (from_cache,) = sync.process_batch(motion.process_batch([row]))
        (from_clip,) = sync.process_batch(motion.process_batch([_without_cache(row)]))
        assert (from_cache["status"], from_cache.get("reason")) == (from_clip["status"], from_clip.get("reason")), name
        # Tolerance: 10 % of the motion score (or 0.005 px/frame for a still), 0.05 of onset correlation.
        a, b = from_cache["scores"], from_clip["scores"]
        assert abs(a["motion"] - b["motion"]) <= max(0.1 * b["motion"], 0.005), (name, a, b)
        assert from_cache["sync_method"] == from_clip["sync_method"]
        if from_clip["sync_method"] == "onset":
            assert a["sync_offset"] == b["sync_offset"] and abs(a["sync_confidence"] - b["sync_confidence"]) < 0.05
    assert transcoded["still"]["status"] == "kept" and from_cache["reason"] == "static"
    assert sync.process_batch([transcoded["moving"]])[0]["sync_method"] == "onset"


def test_caption_frames_come_from_the_cache(transcoded: dict[str, dict]) -> None:
    import cv2

    from curation.config import CaptionConfig
    from curation.stages.captions import CaptionStage

    stage = CaptionStage(CaptionConfig(frame_width=128), captioner=object())
    row = transcoded["moving"]
    cached, clip = stage.request(row).frames_jpeg, stage.request(_without_cache(row)).frames_jpeg
    assert len(cached) == len(clip) == 7
    for a, b in zip(cached, clip):
        a_img, b_img = (cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) for j in (a, b))
        assert a_img.shape == b_img.shape == (70, 128) and np.abs(a_img - b_img).mean() < 6.0


def test_the_cache_goes_with_the_clips_work_files(transcoded: dict[str, dict], tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    kept, rejected = ({**row, **{k: str(shutil.copy(row[k], clips)) for k in ("mp4_path", "flac_path", "frames_path")}}
                      for row in (transcoded["moving"], {**transcoded["still"], "key": "other"}))
    # A kept clip: package is the last stage, so its cache goes there (the shard takes mp4 and flac only).
    caption = "A test pattern moves. <AUDCAP>Clicks twice a second.<ENDAUDCAP>"
    (packaged,) = PackageSamples(ClipConfig()).process_batch([{**kept, "uri": "src.mp4", "end_s": 5.0,
                                                               "caption": caption}])
    assert packaged["status"] == "kept", packaged
    assert not Path(kept["frames_path"]).exists() and Path(kept["mp4_path"]).exists()
    assert ".frames." not in packaged["sample_json"]
    # A rejected clip's row leaves nothing behind, even when it does not name the cache.
    Path(rejected["frames_path"]).rename(clips / f"{rejected['key']}.frames.mov")
    _remove_work_files(_without_cache(rejected), clips)
    assert not list(clips.glob("other*"))


def test_a_missing_or_damaged_cache_falls_back_to_the_clip(transcoded: dict[str, dict], tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    row = transcoded["moving"]
    clip, cache = Path(row["mp4_path"]), Path(row["frames_path"])
    assert frame_source(clip, cache, width=CACHE_WIDTH, num_frames=121)[0] == cache
    # Missing, too narrow for what is asked, full size asked: the clip, quietly.
    for args in ((tmp_path / "gone.mov", CACHE_WIDTH), (cache, CACHE_WIDTH + 2), (cache, None)):
        with caplog.at_level(logging.WARNING):
            path, info = frame_source(clip, args[0], width=args[1], num_frames=121)
        assert (path, info.width) == (clip, SIZE[0]) and not caplog.records
    # Damaged: cut short (the header no longer matches) or not media at all: the clip, with a warning naming it.
    truncated, garbage = tmp_path / "truncated.mov", tmp_path / "garbage.mov"
    truncated.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    garbage.write_bytes(b"\0" * 4096)
    for damaged in (truncated, garbage):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert frame_source(clip, damaged, width=CACHE_WIDTH, num_frames=121)[0] == clip
        assert any(str(damaged) in r.getMessage() for r in caplog.records), damaged
