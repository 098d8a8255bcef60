"""Stand-ins for the sync models: a SyncNet whose distance curve is known (with media whose content
tells it the time), and a tiny face detector in YuNet's ONNX layout.

`IndexSyncNet` has the interface of ovi_pl.sync.model.SyncNet (`forward_lips`, `forward_audio`) and
no learned weights: it reads an index off its input and embeds it on a circle of radius R, at angle
index * THETA. Lip window i embeds the index its first frame shows; audio window j embeds the time
its MFCC window's content says, in video frames. With the picture showing index t + lead at frame t and
the sound `delay` frames late, lip window i and audio window j sit `lead + delay - (j - i)` steps
apart, so the product's distance matrix and its mean over windows are known in closed form
(`expected_curve`), and with them the offset and the confidence SyncNet's rule must report.

How the content carries the index:
- lips: frame t is a uniform grey whose BGR value is t * LIP_STEP (`index_video` writes such a clip,
  `index_crops` such crops); a crop's mean gives t back to the nearest integer.
- audio: `index_tone` is a 1 kHz tone whose amplitude grows as exp(ALPHA * t), t in seconds. Each
  10 ms MFCC frame is then an exact scaled copy of the previous one (160 samples are 10 periods), so
  c0, the log frame energy, rises by 2 * ALPHA * 0.01 per MFCC frame and tells the time. The c0 of
  time 0 is read with python_speech_features, so a product MFCC that differs from it shows up as a
  wrong offset.
"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import torch
from torch import nn

FPS = 25
SAMPLE_RATE = 16000
THETA = math.pi / 40        # radians per index step: the chord grows with |k| up to 40 steps (half a turn)
Y_STEP = 4                  # limited-range luma per frame index in index_video
LIP_STEP = Y_STEP * 255 / 219   # the same step in decoded BGR values
ALPHA = 1.5                 # tone amplitude growth, 1/s
MAX_SECONDS, MAX_DELAY_FRAMES = 3.0, 10
TONE_AMP = 0.9 * math.exp(-ALPHA * (MAX_SECONDS + MAX_DELAY_FRAMES / FPS))  # peak stays <= 0.9


def index_tone(seconds: float, delay_frames: int = 0) -> np.ndarray:
    """float32 16 kHz tone whose loudness says the time; `delay_frames` late (negative: early)."""
    if seconds > MAX_SECONDS or abs(delay_frames) > MAX_DELAY_FRAMES:
        raise ValueError("index_tone is sized for <= 3 s and |delay| <= 10 frames")
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (TONE_AMP * np.exp(ALPHA * (t - delay_frames / FPS)) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def index_crops(frames: int, lead: int = 0) -> np.ndarray:
    """[frames, 224, 224, 3] uint8 crops, crop t a uniform grey for index t + lead (at most 54)."""
    values = np.round((np.arange(frames) + lead) * LIP_STEP)
    if values.max() > 255 or values.min() < 0:
        raise ValueError("index_crops holds indices 0..54")
    return np.broadcast_to(values.astype(np.uint8)[:, None, None, None], (frames, 224, 224, 3)).copy()


def index_video(path: Path, seconds: float, size: tuple[int, int] = (640, 240), right_lead: int = 0,
                marker: tuple[int, int, int, int] | None = None, audio: Path | None = None) -> Path:
    """H.264 (lossless) at 25 fps: frame t's left half is grey for index t, its right half for
    t + right_lead; `marker` (x1, y1, x2, y2) is a white block. With `audio`, that file is muxed in as
    ALAC (lossless, so the tone's level is kept)."""
    width, height = size
    lum = f"16+{Y_STEP}*(N+if(gte(X\\,{width // 2})\\,{right_lead}\\,0))"
    if marker is not None:
        x1, y1, x2, y2 = marker
        lum = f"if(between(X\\,{x1}\\,{x2 - 1})*between(Y\\,{y1}\\,{y2 - 1})\\,235\\,{lum})"
    args = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
            f"color=c=black:s={width}x{height}:r={FPS}:d={seconds},format=yuv420p,geq=lum='{lum}':cb=128:cr=128"]
    if audio is not None:
        args += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "alac"]
    subprocess.run(args + ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _c0_at_zero() -> float:
    """c0 the tone would have in an MFCC frame starting at t = 0 (read off frame 4, clear of the start),
    by python_speech_features (the reference the product's MFCC reproduces)."""
    from python_speech_features import mfcc

    c0 = mfcc(index_tone(0.2).astype(np.float64) * 32768.0, SAMPLE_RATE)[:, 0]
    return float(c0[4]) - 2 * ALPHA * 0.04


def circle(index: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """[N] indices -> [N, 2] float32 points at angle index * THETA on a circle of `radius`."""
    angle = index.double() * THETA
    return (radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).float()


class IndexSyncNet(nn.Module):
    """SyncNet's interface; embeddings on a circle of radius `radius` at angle index * THETA."""

    def __init__(self, radius: float = 1.0):
        super().__init__()
        self.radius = radius
        self.c0_zero = _c0_at_zero()

    def _embed(self, index: torch.Tensor) -> torch.Tensor:
        return circle(index, self.radius)

    def lip_index(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.round(frames[:, :, 0].float().mean(dim=(1, 2, 3)) / LIP_STEP)

    def audio_index(self, mfcc: torch.Tensor) -> torch.Tensor:
        # the window's first MFCC frame; 4 MFCC frames per video frame
        return torch.round((mfcc[:, 0, 0, 0].double() - self.c0_zero) / (2 * ALPHA * 0.04))

    def forward_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, 5, 224, 224] -> [N, 2]"""
        return self._embed(self.lip_index(frames))

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """[N, 1, 13, 20] -> [N, 2]"""
        return self._embed(self.audio_index(mfcc))


def expected_curve(n: int, vshift: int, lag: int, radius: float = 1.0) -> np.ndarray:
    """Mean distance at each of the 2 vshift + 1 shifts for n windows whose lips match the audio `lag`
    windows later (lag = lead + delay). At shift s the audio window of lip window i is i + s - vshift:
    n - |s - vshift| of them exist, at index distance |s - vshift - lag|, and the other |s - vshift|
    are the zero padding past the audio's ends, at distance `radius`."""
    curve = []
    for s in range(2 * vshift + 1):
        shift = s - vshift
        pads = min(abs(shift), n)
        chord = 2 * radius * math.sin(THETA * abs(shift - lag) / 2)
        curve.append(((n - pads) * chord + pads * radius) / n)
    return np.array(curve)


def expected_result(n: int, vshift: int, lag: int, radius: float = 1.0) -> tuple[int, float, float]:
    """(offset, confidence, min_dist) by SyncNet's rule on `expected_curve`."""
    curve = expected_curve(n, vshift, lag, radius)
    best = int(np.argmin(curve))
    return vshift - best, float(np.median(curve) - curve[best]), float(curve[best])


def windows(frames: int, samples: int) -> int:
    """5-frame windows SyncNet scores for `frames` video frames and `samples` audio samples: MFCC frames
    as python_speech_features counts them (25 ms every 10 ms), 4 per video frame."""
    mfcc_frames = 1 if samples <= 400 else 1 + math.ceil((samples - 400) / 160)
    return min(frames, mfcc_frames // 4) - 4


# ---- a tiny YuNet: cv2.FaceDetectorYN's model layout, written as ONNX protobuf by hand ----------------------
# FaceDetectorYN feeds the BGR frame (padded to a multiple of 32, 0..255, NCHW) and reads 12 outputs:
# cls_{8,16,32} and obj_{8,16,32} [1, cells, 1], bbox_{8,16,32} [1, cells, 4] and kps_{8,16,32} [1, cells, 10],
# cells in row-major order. Score = sqrt(cls * obj); box centre ((col, row) + bbox[:2]) * stride, size
# exp(bbox[2:]) * stride; landmark k at (kps[2k:2k+2] + (col, row)) * stride. The model below puts a face
# of a fixed size in every stride-32 cell whose blue channel is 255 somewhere, and none elsewhere.
# (The `onnx` package is not a dependency; the few protobuf messages needed are encoded here.)

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:  # TensorProto: dims 1, data_type 2, name 8, raw_data 9
    data_type = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}[array.dtype]
    return (b"".join(_field(1, d) for d in array.shape) + _field(2, data_type) + _field(8, name)
            + _field(9, np.ascontiguousarray(array).tobytes()))


def _node(op: str, inputs: list[str], outputs: list[str], **ints: list[int]) -> bytes:
    # NodeProto: input 1, output 2, op_type 4, attribute 5 (AttributeProto: name 1, ints 8, type 20 = INTS)
    attributes = [_field(1, k) + b"".join(_field(8, v) for v in vs) + _field(20, 7) for k, vs in ints.items()]
    return (b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op)
            + b"".join(_field(5, a) for a in attributes))


def _value_info(name: str, shape: list[int]) -> bytes:
    # ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1 = FLOAT, shape 2: {dim 1: {dim_value 1}}}}}
    dims = b"".join(_field(1, _field(1, d)) for d in shape)
    return _field(1, name) + _field(2, _field(1, _field(1, 1) + _field(2, dims)))


def yunet_onnx(path: Path, size: tuple[int, int], box_cells: tuple[float, float] = (3.0, 4.0),
               centre: tuple[float, float] = (0.5, 0.5), min_blue: float = 240.0) -> Path:
    """A YuNet-layout model for a padded input of `size` (width, height): in a stride-32 cell (col, row)
    whose brightest blue is 255 it finds a face centred at ((col, row) + centre) * 32, box_cells[0] x
    box_cells[1] cells large, all five landmarks at the cell centre, score 1. Scores fall linearly to 0 at
    blue `min_blue` (FaceDetectorYN clamps them to [0, 1]); nothing at strides 8 and 16."""
    width, height = size
    nodes, weights, outputs = [], [], []
    for stride in (8, 16, 32):
        cells = (height // stride) * (width // stride)
        score_w, score_b = np.zeros((1, 3, 1, 1), np.float32), np.zeros(1, np.float32)
        if stride == 32:
            score_w[0, 0] = 1 / (255 - min_blue)  # blue, the first channel of FaceDetectorYN's BGR blob
            score_b[0] = -min_blue / (255 - min_blue)
        bbox_b = np.array([*centre, *np.log(box_cells)], np.float32)
        weights += [_tensor(f"score_w{stride}", score_w), _tensor(f"score_b{stride}", score_b),
                    _tensor(f"bbox_w{stride}", np.zeros((4, 3, 1, 1), np.float32)), _tensor(f"bbox_b{stride}", bbox_b),
                    _tensor(f"kps_w{stride}", np.zeros((10, 3, 1, 1), np.float32)),
                    _tensor(f"kps_b{stride}", np.full(10, 0.5, np.float32))]
        for width_out in (1, 4, 10):
            weights.append(_tensor(f"shape{width_out}_{stride}", np.array([1, cells, width_out], np.int64)))
        nodes += [_node("MaxPool", ["input"], [f"pool{stride}"], kernel_shape=[stride] * 2, strides=[stride] * 2),
                  _node("Conv", [f"pool{stride}", f"score_w{stride}", f"score_b{stride}"], [f"score{stride}"]),
                  _node("Reshape", [f"score{stride}", f"shape1_{stride}"], [f"cls_{stride}"]),
                  _node("Reshape", [f"score{stride}", f"shape1_{stride}"], [f"obj_{stride}"])]
        for name, width_out in (("bbox", 4), ("kps", 10)):
            nodes += [_node("Conv", [f"pool{stride}", f"{name}_w{stride}", f"{name}_b{stride}"], [f"{name}{stride}"]),
                      _node("Transpose", [f"{name}{stride}"], [f"{name}_t{stride}"], perm=[0, 2, 3, 1]),
                      _node("Reshape", [f"{name}_t{stride}", f"shape{width_out}_{stride}"], [f"{name}_{stride}"])]
        outputs += [(f"cls_{stride}", [1, cells, 1]), (f"obj_{stride}", [1, cells, 1]),
                    (f"bbox_{stride}", [1, cells, 4]), (f"kps_{stride}", [1, cells, 10])]
    graph = (b"".join(_field(1, n) for n in nodes) + _field(2, "tiny_yunet") + b"".join(_field(5, w) for w in weights)
             + _field(11, _value_info("input", [1, 3, height, width]))
             + b"".join(_field(12, _value_info(name, shape)) for name, shape in outputs))
    # ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 (domain "", version 13)
    opset = _field(1, "") + _field(2, 13)
    path.write_bytes(_field(1, 8) + _field(2, "ovi-pl tests") + _field(7, graph) + _field(8, opset))
    return path
