"""SyncNet (our network, MFCCs, tracking, the offset rule) and the onset/motion offset for faceless clips."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_MEDIA
import torch

from curation.config import SyncNetFilter
from curation.stages.syncnet import SyncNetFilterStage
from ovi_pl.media.audio import load_audio
from ovi_pl.media.frames import read_frames
from ovi_pl.sync.faces import Box, HaarFaceDetector, StaticBoxes, detect_in_frames, iou, track_faces
from ovi_pl.sync.mfcc import mfcc
from ovi_pl.sync.model import SyncNet, load_syncnet
from ovi_pl.sync.score import score_track, sync_scores

sys.path.insert(0, str(Path(__file__).parent))
from speech_media import espeak  # noqa: E402
from sync_stubs import (IndexSyncNet, circle, expected_result, index_crops, index_tone, index_video,  # noqa: E402
                        windows, yunet_onnx)

MEDIA = SAMPLE_MEDIA  # examples/media, shipped with the repository
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
def test_offset_rule_on_a_known_distance_curve(delay: int) -> None:
    """Audio delayed by d frames: lip window i (embedded as index i) matches audio window i + d (embedded
    as its index minus d). The mean distance curve over shifts is then known in closed form
    (sync_stubs.expected_curve), and SyncNet's rule must report offset -d, confidence median - min of
    that curve, and its minimum as min_dist."""
    n, vshift, radius = 40, 15, 2.0
    lips = circle(torch.arange(n), radius)
    audio = circle(torch.arange(n) - delay, radius)
    result = sync_scores(lips, audio, vshift=vshift)
    offset, confidence, min_dist = expected_result(n, vshift, delay, radius)
    assert offset == -delay  # the sign convention: positive when the sound comes before the picture
    assert result.offset == offset and result.num_frames == n + 4
    assert result.confidence == pytest.approx(confidence, abs=1e-5)
    assert result.min_dist == pytest.approx(min_dist, abs=1e-5)
    # one value by hand: in sync, the minimum is 0 and the median shift (|shift| = 8) costs 8/40 padding at
    # distance R plus 32/40 windows one chord of 8 steps away
    if delay == 0:
        assert confidence == pytest.approx((8 * radius + 32 * 2 * radius * math.sin(8 * math.pi / 80)) / 40)


@pytest.mark.parametrize("lead,delay,vshift", [(0, 0, 15), (0, 3, 15), (0, -4, 15), (2, 1, 15), (0, 6, 5)])
def test_score_track_pairs_each_lip_window_with_its_mfcc_window(lead: int, delay: int, vshift: int) -> None:
    """score_track end to end on crops and audio whose content says the time: crop t shows index t + lead,
    the tone's loudness says the time minus `delay` frames. The result must be the known curve's, which
    holds only if lip window i meets the MFCC window of the same 0.2 s at every shift."""
    frames = 50
    audio = index_tone(frames / 25, delay)
    result = score_track(IndexSyncNet(radius=2.0), index_crops(frames, lead), audio, vshift=vshift)
    n = windows(frames, len(audio))
    offset, confidence, min_dist = expected_result(n, vshift, lead + delay, radius=2.0)
    assert (result.offset, result.num_frames) == (offset, n + 4)
    assert offset == -(lead + delay) if abs(lead + delay) <= vshift else abs(offset) == vshift
    assert result.confidence == pytest.approx(confidence, abs=1e-5)
    assert result.min_dist == pytest.approx(min_dist, abs=1e-5)


@pytest.fixture(scope="module")
def speech_int16(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Real speech at int16 scale: a shipped clip's track, and espeak-ng after 0.1 s of digital silence."""
    import soundfile

    wav = espeak("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("mfcc") / "fox.wav")
    fox, rate = soundfile.read(str(wav), dtype="float64")
    assert rate == 16000
    clip = load_audio(MEDIA / "two_men_closeup_704x1280.mp4").astype(np.float64)
    return {"clip": clip * 32768.0, "espeak": np.concatenate([np.zeros(1600), fox * 32768.0])}


@pytest.mark.parametrize("source", ["clip", "espeak"])
@pytest.mark.parametrize("length", [None, 300, 400, 401, 1234])
def test_mfcc_matches_python_speech_features(speech_int16: dict[str, np.ndarray], source: str,
                                             length: int | None) -> None:
    """Our re-implementation against python_speech_features.mfcc (what syncnet_python calls, defaults):
    values to 1e-4 relative, frame counts included (shorter than one frame, exactly one, one sample over)."""
    from python_speech_features import mfcc as reference_mfcc

    samples = speech_int16[source] if length is None else speech_int16[source][16000:16000 + length]
    ours = mfcc(samples)
    reference = reference_mfcc(samples, 16000).T
    frames = 1 if len(samples) <= 400 else 1 + math.ceil((len(samples) - 400) / 160)
    assert ours.shape == reference.shape == (13, frames)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=0)


def test_tracking_links_interpolates_and_drops_short_tracks() -> None:
    a, b = Box(10, 10, 60, 60), Box(200, 10, 250, 60)
    per_frame = [[a, b] if i % 3 else [b] for i in range(40)] + [[Box(400, 400, 450, 450)]] * 3
    tracks = track_faces(per_frame, min_track=20)
    assert len(tracks) == 2
    assert sorted(len(t.frames) for t in tracks) == [38, 40]  # face a: frames 1..38, gaps filled
    assert all(np.all(np.diff(t.frames) == 1) for t in tracks)


class CountingHaar(HaarFaceDetector):
    """The product's Haar detector, counting the searches for faces of every size."""

    full_searches = 0

    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        self.full_searches += sizes is None
        return super().detect(frame_bgr, sizes)


def moving_face_frames(num_frames: int = 121, enters: int = 29) -> list[np.ndarray]:
    """A real face (from a sample clip) on a grey 640x352 frame from frame `enters` on, drifting right
    and shrinking from 150 to 95 px wide."""
    import cv2

    frame = read_frames(MEDIA / "two_men_closeup_704x1280.mp4", width=640)[0]
    box = max(HaarFaceDetector().detect(frame), key=lambda b: b.size)
    pad = int(0.3 * box.size)
    face = frame[int(box.y1) - pad:int(box.y2) + pad, int(box.x1) - pad:int(box.x2) + pad]
    frames = []
    for i in range(num_frames):
        canvas = np.full((352, 640, 3), 128, np.uint8)
        if i >= enters:
            t = (i - enters) / (num_frames - enters)
            scaled = cv2.resize(face, None, fx=1 - 0.37 * t, fy=1 - 0.37 * t, interpolation=cv2.INTER_AREA)
            x, y = int(40 + 300 * t), 40
            canvas[y:y + scaled.shape[0], x:x + scaled.shape[1]] = scaled
        frames.append(canvas)
    return frames


def test_searching_every_8th_frame_finds_the_tracks_a_search_on_every_frame_finds() -> None:
    """Between full searches only the sizes already seen are looked for: the moving, shrinking face is
    tracked as with a full search on every detect frame, found by the first full search after it enters."""
    frames = moving_face_frames()
    every_frame, sparse = CountingHaar(min_size=52), CountingHaar(min_size=52)
    [reference] = track_faces(detect_in_frames(frames, every_frame, every=2), min_track=48, max_gap=12)
    [tracked] = track_faces(detect_in_frames(frames, sparse, every=2, search_every=8), min_track=48, max_gap=12)
    assert every_frame.full_searches == 61 and sparse.full_searches == 16
    assert reference.frames[0] <= 30 and tracked.frames[0] == 32 and tracked.frames[-1] == reference.frames[-1]
    common = np.isin(reference.frames, tracked.frames)
    ious = [iou(Box(*a), Box(*b)) for a, b in zip(reference.boxes[common], tracked.boxes)]
    assert min(ious) > 0.8, min(ious)
    with pytest.raises(ValueError, match="multiple of every"):
        detect_in_frames(frames, sparse, every=3, search_every=8)


# --- the SyncNet stage on a stand-in network with a known distance curve (sync_stubs.IndexSyncNet) ---------
# Face boxes on index_video's 640x240 frames, one per half; their crops stay inside that half.
LEFT_FACE, RIGHT_FACE = Box(120, 60, 200, 140), Box(440, 60, 520, 140)
INDEX_SECONDS, INDEX_FRAMES = 2.0, 50


@pytest.fixture(scope="module")
def index_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Left half shows index t at frame t, right half t + 2 (lips two frames ahead)."""
    return index_video(tmp_path_factory.mktemp("index") / "index.mp4", INDEX_SECONDS, right_lead=2)


@pytest.fixture
def stub_syncnet(monkeypatch: pytest.MonkeyPatch):
    """Makes the product load IndexSyncNet(radius) wherever it loads SyncNet weights; returns a setter."""
    def use(radius: float) -> IndexSyncNet:
        net = IndexSyncNet(radius)
        monkeypatch.setattr("ovi_pl.sync.model.load_syncnet", lambda path, device="cpu": net)
        return net
    return use


def run_syncnet_stage(index_clip: Path, tmp_path: Path, delay: int, boxes: list[Box], **config) -> dict:
    from ovi_pl.media.audio import save_flac

    flac = save_flac(tmp_path / f"tone_{delay}.flac", index_tone(INDEX_SECONDS, delay))
    stage = SyncNetFilterStage(SyncNetFilter(weights=tmp_path / "syncnet_v2.model", min_track_frames=20, **config),
                               detector=StaticBoxes(boxes))
    [row] = stage.process_batch([{"key": "k", "mp4_path": str(index_clip), "flac_path": str(flac), "status": "kept"}])
    return row


# (audio delay in frames, target confidence, status, reason): on each side of |offset| <= 3 and confidence > 1.5
PAPER_RULE_CASES = [(3, 1.6, "kept", None), (-3, 1.6, "kept", None), (4, 1.6, "rejected", "av_offset"),
                    (-4, 1.6, "rejected", "av_offset"), (0, 1.6, "kept", None),
                    (0, 1.4, "rejected", "low_sync_confidence"), (3, 1.4, "rejected", "low_sync_confidence")]


@pytest.mark.parametrize("delay,confidence,status,reason", PAPER_RULE_CASES)
def test_syncnet_stage_applies_the_paper_rule(index_clip: Path, tmp_path: Path, stub_syncnet, delay: int,
                                              confidence: float, status: str, reason: str | None) -> None:
    """Decode at 25 fps, track, crop, MFCC, score, decide: with the audio `delay` frames late the curve's
    offset is -delay and, the curve being linear in the embedding radius, the radius sets its confidence."""
    n = windows(INDEX_FRAMES, INDEX_FRAMES * 640)
    radius = confidence / expected_result(n, 15, delay)[1]
    stub_syncnet(radius)
    row = run_syncnet_stage(index_clip, tmp_path, delay, [LEFT_FACE])
    offset, expected_confidence, min_dist = expected_result(n, 15, delay, radius)
    assert offset == -delay and expected_confidence == pytest.approx(confidence)
    [track] = row["syncnet_tracks"]
    assert (track["start_frame"], track["num_frames"], track["offset"]) == (0, INDEX_FRAMES, offset)
    assert track["confidence"] == pytest.approx(confidence, abs=1e-4)
    assert track["min_dist"] == pytest.approx(min_dist, abs=1e-4)
    assert row["scores"] == pytest.approx({"num_faces": 1.0, "syncnet_offset": float(offset),
                                           "syncnet_confidence": confidence}, abs=1e-4)
    assert (row["status"], row.get("reason")) == (status, reason)


@pytest.mark.parametrize("delay,best", [(0, 0), (-2, 1)])
def test_syncnet_stage_judges_a_clip_by_its_most_confident_track(index_clip: Path, tmp_path: Path, stub_syncnet,
                                                                 delay: int, best: int) -> None:
    """Two faces; the right one's lips run 2 frames ahead of the left one's. With the audio in sync with the
    left face (delay 0) that track is the more confident; with the audio 2 frames early (delay -2), the
    right one. The clip gets the best track's scores and num_faces = 2."""
    stub_syncnet(2.0)
    row = run_syncnet_stage(index_clip, tmp_path, delay, [LEFT_FACE, RIGHT_FACE])
    n = windows(INDEX_FRAMES, INDEX_FRAMES * 640)
    expected = [expected_result(n, 15, lead + delay, 2.0) for lead in (0, 2)]
    assert max(range(2), key=lambda i: expected[i][1]) == best
    tracks = row["syncnet_tracks"]
    assert [(t["offset"], t["confidence"]) for t in tracks] == [(o, pytest.approx(c, abs=1e-4)) for o, c, _ in expected]
    assert row["scores"] == pytest.approx({"num_faces": 2.0, "syncnet_offset": float(expected[best][0]),
                                           "syncnet_confidence": expected[best][1]}, abs=1e-4)
    assert row["status"] == ("kept" if abs(expected[best][0]) <= 3 and expected[best][1] > 1.5 else "rejected")


def test_syncnet_stage_without_a_face_keeps_or_rejects_by_config(index_clip: Path, tmp_path: Path,
                                                                  stub_syncnet) -> None:
    stub_syncnet(2.0)
    row = run_syncnet_stage(index_clip, tmp_path, 0, [])
    assert row["status"] == "kept" and row["scores"] == {"num_faces": 0.0} and row["syncnet_tracks"] == []
    row = run_syncnet_stage(index_clip, tmp_path, 0, [], no_face="reject")
    assert (row["status"], row["reason"], row["scores"]) == ("rejected", "no_face", {"num_faces": 0.0})


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


def test_syncnet_stage_tracks_faces_with_the_default_detector(stub_syncnet, tmp_path: Path) -> None:
    """No detector given: the stage builds the Haar cascade and tracks both men of the real clip from its
    first frame, at the face sizes read off a frame by eye (a third, short track may come and go)."""
    stub_syncnet(2.0)  # the sync values on real crops mean nothing here; the tracks are what is tested
    config = SyncNetFilter(weights=tmp_path / "syncnet_v2.model", min_track_frames=20, max_track_frames=12)
    stage = SyncNetFilterStage(config)
    [row] = stage.process_batch([{"key": "closeup", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4")}])
    assert isinstance(stage._detector, HaarFaceDetector)
    tracks = row["syncnet_tracks"]
    assert row["scores"]["num_faces"] == len(tracks) >= 2
    whole = sorted((t for t in tracks if t["start_frame"] == 0), key=lambda t: -t["mean_face_size"])
    assert len(whole) == 2 and all(t["num_frames"] == 12 for t in whole)
    for track, face in zip(whole, CLOSEUP_FACES):
        assert track["mean_face_size"] == pytest.approx(face.size, rel=0.15), (track, face)


REAL_WEIGHTS = os.environ.get("OVI_PL_SYNCNET_WEIGHTS")


@pytest.mark.skipif(not REAL_WEIGHTS, reason="real lip-sync check needs OVI_PL_SYNCNET_WEIGHTS (syncnet_v2.model)")
@pytest.mark.parametrize("clip", ["kitchen_two_women", "stage_three_men", "two_men_closeup"])
def test_real_weights_find_the_speakers_in_sync(clip: str) -> None:
    config = SyncNetFilter(enabled=True, weights=REAL_WEIGHTS)
    [row] = SyncNetFilterStage(config).process_batch([{"key": clip, "mp4_path": str(MEDIA / f"{clip}_704x1280.mp4")}])
    assert row["scores"]["num_faces"] >= 1
    assert abs(row["scores"]["syncnet_offset"]) <= 3 and row["scores"]["syncnet_confidence"] > 1.5, row


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


def bright_block_s3fd(path: Path, box: tuple[float, float, float, float], syncnet_layout: bool = False) -> Path:
    """S3FD weights whose network finds one face, `box`, for a frame whose first colour channel is white in
    the 32x32 block of stride-32 cell (row 3, col 4), and nothing in a dark frame. Every backbone layer passes
    channel 0 through (the centre tap 1, all else 0), so the fc7 map holds the block's max (255 minus the
    mean) at that cell and 0 elsewhere; the fc7 confidence head turns that into face odds of e^101 against
    e^-50 elsewhere, every other level says background, and the fc7 regression head's bias encodes `box`
    against that cell's anchor (centre (144, 112), side 128)."""
    from ovi_pl.sync.s3fd import SYNCNET_PYTHON_NAMES, S3FDNet

    sd = {k: torch.zeros_like(v) for k, v in S3FDNet().state_dict().items()}
    for name in ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
                 "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6"):
        sd[f"{name}.weight"][0, 0, 1, 1] = 1.0
    sd["fc7.weight"][0, 0, 0, 0] = 1.0
    for name in ("conv3_3_norm", "conv4_3_norm", "conv5_3_norm"):
        sd[f"{name}.weight"].fill_(1.0)
    for name in ("conv3_3_norm", "conv4_3_norm", "conv5_3_norm", "conv6_2", "conv7_2"):
        sd[f"{name}_mbox_conf.bias"][:-1] = 10.0  # background
        sd[f"{name}_mbox_conf.bias"][-1] = -10.0
    sd["fc7_mbox_conf.weight"][1, 0, 1, 1] = 1.0
    sd["fc7_mbox_conf.bias"][1] = -50.0
    x1, y1, x2, y2 = box
    sd["fc7_mbox_loc.bias"][:] = torch.tensor([((x1 + x2) / 2 - 144) / 12.8, ((y1 + y2) / 2 - 112) / 12.8,
                                               math.log((x2 - x1) / 128) / 0.2, math.log((y2 - y1) / 128) / 0.2])
    if syncnet_layout:
        back = {ours: theirs for theirs, ours in SYNCNET_PYTHON_NAMES.items()}
        sd = {f"{back[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in sd.items()}
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("syncnet_layout", [False, True], ids=["face_alignment", "syncnet_python"])
def test_s3fd_network_finds_the_face_its_weights_put_there(tmp_path: Path, syncnet_layout: bool) -> None:
    """The whole detector (load, input normalisation and channel order, the network at either layout's fc6
    dilation and pooling, decoding, NMS, clipping) on weights built to see one face: the box must come out,
    and nothing from a frame without the block."""
    from ovi_pl.sync.s3fd import S3FDDetector

    expected = (100.0, 40.0, 200.0, 160.0)
    detector = S3FDDetector(bright_block_s3fd(tmp_path / "s3fd.pth", expected, syncnet_layout))
    assert detector.channel_order == ("rgb" if syncnet_layout else "bgr")
    frame = np.zeros((256, 320, 3), np.uint8)
    assert detector.detect(frame) == []
    frame[96:128, 128:160] = 255  # cell (row 3, col 4) at stride 32
    [box] = detector.detect(frame)
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(expected, abs=1e-3)
    assert box.score == pytest.approx(1.0)
    frame[96:128, 128:160] = (255, 0, 0) if syncnet_layout else (0, 0, 255)  # only the other order's first channel
    assert detector.detect(frame) == []


def test_s3fd_config_needs_detector_weights(random_weights: Path, s3fd_weights: Path) -> None:
    with pytest.raises(ValueError, match="detector_weights"):
        SyncNetFilter(enabled=True, weights=random_weights, detector="s3fd")
    config = SyncNetFilter(enabled=True, weights=random_weights, detector="s3fd", detector_weights=s3fd_weights)
    stage = SyncNetFilterStage(config)
    stage.setup()
    from ovi_pl.sync.s3fd import S3FDDetector

    assert isinstance(stage._detector, S3FDDetector)


# --- YuNet (ovi_pl/sync/faces.py YuNetDetector, cv2.FaceDetectorYN) on a model in YuNet's layout made here ---


def test_yunet_detector_reads_boxes_and_scores_from_the_model(tmp_path: Path) -> None:
    """sync_stubs.yunet_onnx puts a 3x4-cell face on every stride-32 cell holding a pixel of blue 255. A 310x300
    frame is padded to 320x320 (the model's input) by FaceDetectorYN; boxes come back in frame pixels."""
    from ovi_pl.sync.faces import YuNetDetector

    detector = YuNetDetector(yunet_onnx(tmp_path / "yunet.onnx", (320, 320)))
    frame = np.zeros((300, 310, 3), np.uint8)
    assert detector.detect(frame) == []
    frame[100:110, 140:150] = (255, 0, 0)      # cell (row 3, col 4): centre (144, 112), 96 x 128
    frame[200:202, 40:42] = (255, 255, 255)    # cell (row 6, col 1): centre (48, 208)
    found = sorted(detector.detect(frame), key=lambda b: b.x1)
    assert [(b.x1, b.y1, b.x2, b.y2, b.score) for b in found] == [(0.0, 144.0, 96.0, 272.0, 1.0),
                                                                  (96.0, 48.0, 192.0, 176.0, 1.0)]
    frame[:] = (0, 0, 255)                     # red is not blue: the first channel reaches the model first
    assert detector.detect(frame) == []
    with pytest.raises(FileNotFoundError, match="detector_weights"):
        YuNetDetector(tmp_path / "missing.onnx")


def test_syncnet_stage_tracks_faces_with_yunet(tmp_path: Path, stub_syncnet) -> None:
    """detector: yunet with detector_weights builds YuNetDetector; on a 25 fps index clip with a white marker
    the tiny YuNet finds a 2x2-cell face centred 4 cells right of and 2 below the marker's cell on every frame
    (its crop clear of the marker), and the stage scores that track with the known curve."""
    from ovi_pl.media.audio import save_flac
    from ovi_pl.sync.faces import YuNetDetector

    stub_syncnet(2.0)
    clip = index_video(tmp_path / "marked.mp4", INDEX_SECONDS, size=(320, 256), marker=(32, 32, 64, 64))
    onnx = yunet_onnx(tmp_path / "yunet.onnx", (320, 256), box_cells=(2.0, 2.0), centre=(4.5, 2.5))
    flac = save_flac(tmp_path / "tone.flac", index_tone(INDEX_SECONDS, 2))
    config = SyncNetFilter(enabled=True, weights=tmp_path / "syncnet_v2.model", detector="yunet",
                           detector_weights=onnx, min_track_frames=20)
    stage = SyncNetFilterStage(config)
    [row] = stage.process_batch([{"key": "k", "mp4_path": str(clip), "flac_path": str(flac), "status": "kept"}])
    assert isinstance(stage._detector, YuNetDetector)
    [track] = row["syncnet_tracks"]
    assert (track["start_frame"], track["num_frames"], track["mean_face_size"]) == (0, INDEX_FRAMES, 64.0)
    offset, confidence, _ = expected_result(windows(INDEX_FRAMES, INDEX_FRAMES * 640), 15, 2, 2.0)
    assert (track["offset"], track["confidence"]) == (offset, pytest.approx(confidence, abs=1e-4)) and offset == -2
