"""SyncNet (our network, MFCCs, tracking, the offset rule) and the onset/motion offset for faceless clips."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MEDIA
import torch

from curation.stages.av_offset import AVOffsetFilter, AVOffsetStage, clip_offset
from curation.stages.syncnet import SyncNetFilter, SyncNetFilterStage
from curation.speech.audio import load_audio
from curation.syncnet.faces import Box, HaarFaceDetector, StaticBoxes, iou, track_faces
from curation.syncnet.mfcc import mfcc
from curation.syncnet.model import SyncNet, load_syncnet
from curation.syncnet.score import sync_scores

sys.path.insert(0, str(Path(__file__).parent))
from speech_media import make_flash_clip  # noqa: E402

MEDIA = SHARED_MEDIA
# Face boxes (x1, y1, x2, y2) of the two men at 1280x704, read off a frame by eye.
CLOSEUP_FACES = [Box(320, 80, 580, 390), Box(810, 220, 1050, 510)]


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)  # the released file is a plain state dict like this one
    return path


def test_network_has_the_released_key_layout(random_weights: Path) -> None:
    sd = torch.load(random_weights, weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["netcnnaud.0.weight"] == (64, 1, 3, 3)
    assert shapes["netcnnaud.18.weight"] == (512, 256, 5, 4)
    assert shapes["netcnnlip.0.weight"] == (96, 3, 5, 7, 7)
    assert shapes["netcnnlip.18.weight"] == (512, 256, 1, 6, 6)
    assert shapes["netfcaud.3.weight"] == (1024, 512) and shapes["netfclip.1.running_var"] == (512,)
    model = load_syncnet(random_weights)
    with torch.no_grad():
        assert model.forward_audio(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert model.forward_lips(torch.randn(2, 3, 5, 224, 224)).shape == (2, 1024)


def test_loader_names_the_file_and_the_problem(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.model")
    with pytest.raises(ValueError, match="wrong.model.*not a SyncNet"):
        load_syncnet(tmp_path / "wrong.model")
    with pytest.raises(FileNotFoundError, match="filters.syncnet.weights"):
        load_syncnet(tmp_path / "missing.model")


@pytest.mark.parametrize("delay", [-4, 0, 3])
def test_offset_rule_sign_and_confidence(delay: int) -> None:
    """Audio delayed by d frames: lip window i matches audio window i + d, and SyncNet reports -d."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(80, 32, generator=gen)
    lips = base[20:60]
    audio = base[20 - delay:60 - delay]
    result = sync_scores(lips, audio, vshift=15)
    assert result.offset == -delay
    # the reference zero-pads the audio past the ends, so the best distance is small, not zero
    assert result.confidence > 1.0 and result.min_dist < 1.0


def test_mfcc_frames_every_10_ms() -> None:
    t = np.arange(16000) / 16000
    feats = mfcc(0.3 * np.sin(2 * math.pi * 440 * t) * 32768)
    # 1 + ceil((16000 - 400) / 160) frames, as python_speech_features counts them
    assert feats.shape == (13, 99) and np.isfinite(feats).all()


def test_tracking_links_interpolates_and_drops_short_tracks() -> None:
    a, b = Box(10, 10, 60, 60), Box(200, 10, 250, 60)
    per_frame = [[a, b] if i % 3 else [b] for i in range(40)] + [[Box(400, 400, 450, 450)]] * 3
    tracks = track_faces(per_frame, min_track=20)
    assert len(tracks) == 2
    assert sorted(len(t.frames) for t in tracks) == [38, 40]  # face a: frames 1..38, gaps filled
    assert all(np.all(np.diff(t.frames) == 1) for t in tracks)


def test_syncnet_end_to_end_on_real_clip_with_random_weights(random_weights: Path) -> None:
    """Decode at 25 fps, track, crop 224x224, MFCC, score: one offset and confidence per face track.
    Random weights make the numbers meaningless; the path and the bookkeeping are what is tested."""
    config = SyncNetFilter(weights=random_weights, detect_width=1280, min_track_frames=20, max_track_frames=24,
                           min_confidence=-1e9, max_abs_offset=15)
    stage = SyncNetFilterStage(config, detector=StaticBoxes(CLOSEUP_FACES))
    video = str(MEDIA / "two_men_closeup_704x1280.mp4")
    [row] = stage.process_batch([{"key": "closeup", "mp4_path": video, "status": "kept"}])
    tracks = row["syncnet_tracks"]
    assert len(tracks) == 2 and all(t["num_frames"] == 24 for t in tracks)
    for t in tracks:
        assert -15 <= t["offset"] <= 15 and math.isfinite(t["confidence"]) and t["confidence"] >= 0
    assert row["scores"]["num_faces"] == 2.0
    assert row["scores"]["syncnet_confidence"] == max(t["confidence"] for t in tracks)
    assert row.get("status") == "kept"


def test_syncnet_rejects_by_the_paper_rule(random_weights: Path) -> None:
    config = SyncNetFilter(weights=random_weights, detect_width=1280, min_track_frames=20, max_track_frames=12)
    stage = SyncNetFilterStage(config, detector=StaticBoxes(CLOSEUP_FACES[:1]))
    [row] = stage.process_batch([{"key": "c", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4")}])
    # random weights cannot reach confidence 1.5 over a flat distance curve
    assert row["status"] == "rejected" and row["reason"] in ("av_offset", "low_sync_confidence")
    none = SyncNetFilterStage(config, detector=StaticBoxes([]))
    [row] = none.process_batch([{"key": "c", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4")}])
    assert row.get("status", "kept") == "kept" and row["scores"]["num_faces"] == 0.0


def test_config_is_strict_and_needs_weights_when_enabled() -> None:
    with pytest.raises(ValueError, match="extra"):
        SyncNetFilter(max_offset=3)
    with pytest.raises(ValueError, match="weights"):
        SyncNetFilter(enabled=True)
    assert (SyncNetFilter().max_abs_offset, SyncNetFilter().min_confidence, SyncNetFilter().vshift) == (3, 1.5, 15)


def test_default_haar_detector_finds_both_faces_of_a_real_clip() -> None:
    import av

    with av.open(str(MEDIA / "two_men_closeup_704x1280.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    found = HaarFaceDetector().detect(frame)
    for face in CLOSEUP_FACES:
        assert max((iou(face, box) for box in found), default=0.0) > 0.2, (face, found)


def test_syncnet_stage_tracks_faces_with_the_default_detector(random_weights: Path) -> None:
    config = SyncNetFilter(weights=random_weights, min_track_frames=20, max_track_frames=12, min_confidence=-1e9,
                           max_abs_offset=15)
    [row] = SyncNetFilterStage(config).process_batch(
        [{"key": "closeup", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4"), "status": "kept"}])
    assert row["scores"]["num_faces"] >= 1 and row["status"] == "kept"


REAL_WEIGHTS = os.environ.get("OVI_PL_SYNCNET_WEIGHTS")


@pytest.mark.skipif(not REAL_WEIGHTS, reason="real lip-sync check needs OVI_PL_SYNCNET_WEIGHTS (syncnet_v2.model)")
@pytest.mark.parametrize("clip", ["kitchen_two_women", "stage_three_men", "two_men_closeup"])
def test_real_weights_find_the_speakers_in_sync(clip: str) -> None:
    config = SyncNetFilter(enabled=True, weights=REAL_WEIGHTS)
    [row] = SyncNetFilterStage(config).process_batch([{"key": clip, "mp4_path": str(MEDIA / f"{clip}_704x1280.mp4")}])
    assert row["scores"]["num_faces"] >= 1
    assert abs(row["scores"]["syncnet_offset"]) <= 3 and row["scores"]["syncnet_confidence"] > 1.5, row


@pytest.mark.parametrize("shift,fps", [(4, 25), (-3, 25), (4, 24), (-3, 24)])
def test_onset_motion_offset_finds_a_known_shift(tmp_path: Path, shift: int, fps: int) -> None:
    clip, _ = make_flash_clip(tmp_path / "flash.mp4", shift, fps=fps)
    est = clip_offset(clip, load_audio(clip))
    # SyncNet's sign: audio delayed by `shift` frames reads as -shift
    assert abs(est.offset - (-shift)) <= 1, (est.offset, est.confidence)
    assert est.confidence > 0.5


def test_av_offset_stage_rejects_confident_misalignment_only(tmp_path: Path) -> None:
    late, _ = make_flash_clip(tmp_path / "late.mp4", 6, fps=25)
    synced, _ = make_flash_clip(tmp_path / "synced.mp4", 0, fps=25)
    stage = AVOffsetStage(AVOffsetFilter())
    rows = stage.process_batch([{"key": "late", "mp4_path": str(late)}, {"key": "ok", "mp4_path": str(synced)},
                                {"key": "face", "mp4_path": str(synced), "scores": {"num_faces": 1.0}}])
    assert rows[0]["status"] == "rejected" and rows[0]["reason"] == "av_offset"
    assert rows[0]["scores"]["av_offset"] == -6.0
    assert rows[1].get("status", "kept") == "kept" and rows[1]["scores"]["av_offset"] == 0.0
    assert "av_offset" not in rows[2]["scores"]  # faces are SyncNet's job


def test_av_offset_defaults_keep_the_real_in_sync_speech_clips() -> None:
    """Lip motion is small next to body and camera motion, so onsets vs motion can peak at a wrong lag
    on real speech (stage_three_men: -4 frames at 0.37); the default threshold must not reject it."""
    rows = [{"key": c, "mp4_path": str(MEDIA / f"{c}_704x1280.mp4")}
            for c in ("kitchen_two_women", "stage_three_men", "two_men_closeup")]
    out = AVOffsetStage(AVOffsetFilter()).process_batch(rows)
    assert [r.get("status", "kept") for r in out] == ["kept"] * 3, [r.get("detail") for r in out]
    assert all("av_offset" in r["scores"] for r in out)
