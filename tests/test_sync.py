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

from curation.config import AVOffsetFilter, SyncNetFilter
from curation.stages.av_offset import AVOffsetStage, clip_offset
from curation.stages.syncnet import SyncNetFilterStage
from ovi_pl.media.audio import load_audio
from ovi_pl.sync.faces import Box, HaarFaceDetector, StaticBoxes, iou, track_faces
from ovi_pl.sync.mfcc import mfcc
from ovi_pl.sync.model import SyncNet, load_syncnet
from ovi_pl.sync.score import sync_scores

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


# --- S3FD (ovi_pl/sync/s3fd.py) ---------------------------------------------------------------------------
# Read off the reference networks (face_alignment's net_s3fd.py; syncnet_python's detectors/s3fd/nets.py):
# 65 tensors, 22,459,110 parameters; a few characteristic (key, shape) pairs in face_alignment's names, and the
# same tensors under syncnet_python's names.
S3FD_NUM_TENSORS, S3FD_NUM_PARAMS = 65, 22_459_110
S3FD_SHAPES = {
    "conv1_1.weight": (64, 3, 3, 3), "conv3_3.bias": (256,), "conv5_3.weight": (512, 512, 3, 3),
    "fc6.weight": (1024, 512, 3, 3), "fc7.weight": (1024, 1024, 1, 1), "conv6_1.weight": (256, 1024, 1, 1),
    "conv6_2.weight": (512, 256, 3, 3), "conv7_1.weight": (128, 512, 1, 1), "conv7_2.weight": (256, 128, 3, 3),
    "conv3_3_norm.weight": (256,), "conv4_3_norm.weight": (512,), "conv5_3_norm.weight": (512,),
    "conv3_3_norm_mbox_conf.weight": (4, 256, 3, 3), "conv3_3_norm_mbox_loc.weight": (4, 256, 3, 3),
    "conv4_3_norm_mbox_conf.weight": (2, 512, 3, 3), "fc7_mbox_loc.weight": (4, 1024, 3, 3),
    "conv7_2_mbox_conf.bias": (2,),
}
SYNCNET_PYTHON_S3FD = {"vgg.0.weight": "conv1_1.weight", "vgg.14.bias": "conv3_3.bias", "vgg.28.weight":
                       "conv5_3.weight", "vgg.31.weight": "fc6.weight", "vgg.33.weight": "fc7.weight",
                       "extras.1.weight": "conv6_2.weight", "L2Norm3_3.weight": "conv3_3_norm.weight",
                       "conf.0.weight": "conv3_3_norm_mbox_conf.weight", "loc.3.weight": "fc7_mbox_loc.weight",
                       "conf.5.bias": "conv7_2_mbox_conf.bias"}


@pytest.fixture(scope="module")
def s3fd_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ovi_pl.sync.s3fd import S3FDNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("s3fd") / "s3fd.pth"
    torch.save(S3FDNet().state_dict(), path)
    return path


def test_s3fd_network_has_the_released_key_layout() -> None:
    from ovi_pl.sync.s3fd import SYNCNET_PYTHON_NAMES, S3FDNet

    sd = S3FDNet().state_dict()
    assert len(sd) == S3FD_NUM_TENSORS and sum(v.numel() for v in sd.values()) == S3FD_NUM_PARAMS
    assert {k: tuple(sd[k].shape) for k in S3FD_SHAPES} == S3FD_SHAPES
    assert float(sd["conv3_3_norm.weight"][0]) == 10 and float(sd["conv5_3_norm.weight"][0]) == 5
    # syncnet_python's names cover every tensor exactly once
    modules = {k.rpartition(".")[0] for k in sd}
    assert len(SYNCNET_PYTHON_NAMES) == len(modules) and set(SYNCNET_PYTHON_NAMES.values()) == modules
    for theirs, ours in SYNCNET_PYTHON_S3FD.items():
        module, _, param = theirs.rpartition(".")
        assert f"{SYNCNET_PYTHON_NAMES[module]}.{param}" == ours


def test_s3fd_loader_reads_both_layouts_and_names_bad_keys(s3fd_weights: Path, tmp_path: Path) -> None:
    from ovi_pl.sync.s3fd import SYNCNET_PYTHON_NAMES, load_s3fd

    net, order = load_s3fd(s3fd_weights)
    assert order == "bgr" and not net.training and net.fc6.dilation == (1, 1)
    sd = torch.load(s3fd_weights, weights_only=True)
    assert torch.equal(net.state_dict()["fc7_mbox_loc.weight"], sd["fc7_mbox_loc.weight"])
    back = {v: k for k, v in SYNCNET_PYTHON_NAMES.items()}
    theirs = {f"{back[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in sd.items()}
    torch.save(theirs, tmp_path / "sfd_face.pth")
    net, order = load_s3fd(tmp_path / "sfd_face.pth")
    assert order == "rgb" and net.fc6.dilation == (6, 6) and net.pool3_ceil
    assert torch.equal(net.state_dict()["conv3_3_norm_mbox_conf.weight"], sd["conv3_3_norm_mbox_conf.weight"])

    bad = dict(sd)
    bad["conv6_9.weight"] = bad.pop("conv6_2.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth.*missing keys \['conv6_2.weight'\].*unexpected keys "
                                         r"\['conv6_9.weight'\]"):
        load_s3fd(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="nothing.pth.*filters.syncnet.detector_weights"):
        load_s3fd(tmp_path / "nothing.pth")


def test_s3fd_decodes_one_confident_box_and_suppresses_its_neighbour(s3fd_weights: Path) -> None:
    """Head outputs built by hand: a face at level 3 (stride 32, anchor 128), cell (row 3, col 4), whose
    regression encodes the box (100, 40, 200, 160); a weaker copy 4 px to the right in the next cell is an
    overlap NMS must remove. Checks the anchor grid, the variances and the pixel scale."""
    from ovi_pl.sync.s3fd import S3FDDetector

    det = S3FDDetector(s3fd_weights, score_threshold=0.8)
    height, width = 256, 320

    def encode(box: tuple[float, float, float, float], cx0: float, cy0: float) -> list[float]:
        x1, y1, x2, y2 = box
        return [((x1 + x2) / 2 - cx0) / (0.1 * 128), ((y1 + y2) / 2 - cy0) / (0.1 * 128),
                math.log((x2 - x1) / 128) / 0.2, math.log((y2 - y1) / 128) / 0.2]

    def heads(x: torch.Tensor) -> list[torch.Tensor]:
        assert x.shape == (1, 3, height, width)
        out = []
        for level, stride in enumerate((4, 8, 16, 32, 64, 128)):
            h, w = math.ceil(height / stride), math.ceil(width / stride)
            conf = torch.zeros(1, 2, h, w)
            conf[:, 0] = 10.0  # background everywhere
            loc = torch.randn(1, 4, h, w)
            if level == 3:
                conf[0, :, 3, 4] = torch.tensor([-10.0, 10.0])
                loc[0, :, 3, 4] = torch.tensor(encode((100, 40, 200, 160), 4.5 * 32, 3.5 * 32))
                conf[0, :, 3, 5] = torch.tensor([0.0, 3.0])  # p = 0.95
                loc[0, :, 3, 5] = torch.tensor(encode((104, 40, 204, 160), 5.5 * 32, 3.5 * 32))
            out += [conf, loc]
        return out

    det.net = heads  # type: ignore[assignment]
    [box] = det.detect(np.zeros((height, width, 3), np.uint8))
    assert np.allclose([box.x1, box.y1, box.x2, box.y2], [100, 40, 200, 160], atol=1.0), box
    assert box.score > 0.999


def test_s3fd_runs_on_a_real_frame_with_random_weights(s3fd_weights: Path) -> None:
    import av
    import cv2

    from ovi_pl.sync.s3fd import S3FDDetector

    with av.open(str(MEDIA / "two_men_closeup_704x1280.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    small = cv2.resize(frame, (320, 176), interpolation=cv2.INTER_AREA)
    found = S3FDDetector(s3fd_weights, score_threshold=0.5).detect(small)
    assert isinstance(found, list) and all(isinstance(b, Box) for b in found)
    assert all(0 <= b.x1 < b.x2 <= 320 and 0 <= b.y1 < b.y2 <= 176 for b in found)


def test_s3fd_config_needs_detector_weights(random_weights: Path, s3fd_weights: Path) -> None:
    with pytest.raises(ValueError, match="detector_weights"):
        SyncNetFilter(enabled=True, weights=random_weights, detector="s3fd")
    config = SyncNetFilter(enabled=True, weights=random_weights, detector="s3fd", detector_weights=s3fd_weights)
    stage = SyncNetFilterStage(config)
    stage.setup()
    from ovi_pl.sync.s3fd import S3FDDetector

    assert isinstance(stage._detector, S3FDDetector)
