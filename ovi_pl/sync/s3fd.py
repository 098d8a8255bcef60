"""S3FD face detector (Zhang et al. 2017, "S3FD: Single Shot Scale-invariant Face Detector") from local weights.

The network is VGG16 (conv1_1..conv5_3) with fc6 (3x3, 1024) and fc7 (1x1, 1024) as convolutions, two extra
blocks conv6_1/6_2 and conv7_1/7_2 (stride 2 each), L2 normalisation with learned scales (initial 10/8/5) on
conv3_3/conv4_3/conv5_3, and one confidence and one regression head per level. Six levels with strides
4, 8, ..., 128 and one square anchor of side 4 * stride per cell. The conv3_3 confidence head has 4 channels:
three background scores reduced by a max ("max-out background") and one face score.

Two weight files are in wide use, with the same tensors under different names:

- face_alignment's `s3fd-619a316812.pth` (a port of the original Caffe model): keys `conv1_1.weight`, ...,
  `conv3_3_norm.weight`, `conv3_3_norm_mbox_conf.weight`, `fc7_mbox_loc.bias`, ... This module's own names.
  That port feeds BGR minus the mean (104, 117, 123). It runs fc6 undilated with padding 3, which makes the
  fc7 map 4 cells larger than the stride-32 grid and shifts those anchors by 2 cells (clcarwin/SFD_pytorch
  issue 2); the original Caffe model uses dilation 1 (sfzhang15/SFD issue 33) and so, shape-preserving,
  padding 1, which is what we run.
- syncnet_python's `sfd_face.pth` (detectors/s3fd): keys `vgg.<i>`, `L2Norm3_3.weight`, `extras.<i>`,
  `loc.<i>`, `conf.<i>`. Its network runs fc6 with dilation 6, pools conv3_3 with ceil mode, and is fed
  RGB with the matching mean (123, 117, 104) subtracted. The loader renames these keys and sets those options.

Boxes: softmax face probability above `score_threshold` (0.8, syncnet_python's default), anchor decoding with
variances 0.1 / 0.2, then greedy NMS.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .faces import Box

STRIDES = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
# (name, in, out) of the backbone convolutions, in order; a 2x2 max-pool follows conv1_2, 2_2, 3_3, 4_3, 5_3.
_BACKBONE = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
             ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
             ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
             ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]
_POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"}
# detection levels: (source feature name, channels); conv3_3 .. conv5_3 go through their L2Norm first
_LEVELS = [("conv3_3_norm", 256), ("conv4_3_norm", 512), ("conv5_3_norm", 512), ("fc7", 1024),
           ("conv6_2", 512), ("conv7_2", 256)]


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight.view(1, -1, 1, 1)


class S3FDNet(nn.Module):
    """Returns [conf_0, loc_0, ..., conf_5, loc_5]: conf [B, 2, h, w] logits (background, face), loc [B, 4, h, w]."""

    def __init__(self, fc6_dilation: int = 1, pool3_ceil: bool = False):
        super().__init__()
        for name, cin, cout in _BACKBONE:
            setattr(self, name, nn.Conv2d(cin, cout, 3, padding=1))
        # shape-preserving: the original's dilation 1 / padding 1, or syncnet_python's dilation 6 / padding 6
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=fc6_dilation, dilation=fc6_dilation)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.conv6_1 = nn.Conv2d(1024, 256, 1)
        self.conv6_2 = nn.Conv2d(256, 512, 3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(512, 128, 1)
        self.conv7_2 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        self.conv3_3_norm = L2Norm(256, 10)
        self.conv4_3_norm = L2Norm(512, 8)
        self.conv5_3_norm = L2Norm(512, 5)
        for level, (name, ch) in enumerate(_LEVELS):
            setattr(self, f"{name}_mbox_conf", nn.Conv2d(ch, 4 if level == 0 else 2, 3, padding=1))
            setattr(self, f"{name}_mbox_loc", nn.Conv2d(ch, 4, 3, padding=1))
        self.pool3_ceil = pool3_ceil

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = {}
        for name, _, _ in _BACKBONE:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                feats[name] = x
                x = F.max_pool2d(x, 2, 2, ceil_mode=self.pool3_ceil and name == "conv3_3")
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        feats["fc7"] = x
        x = F.relu(self.conv6_2(F.relu(self.conv6_1(x))))
        feats["conv6_2"] = x
        feats["conv7_2"] = F.relu(self.conv7_2(F.relu(self.conv7_1(x))))
        for name in ("conv3_3", "conv4_3", "conv5_3"):
            feats[f"{name}_norm"] = getattr(self, f"{name}_norm")(feats[name])
        out = []
        for level, (name, _) in enumerate(_LEVELS):
            conf = getattr(self, f"{name}_mbox_conf")(feats[name])
            if level == 0:  # max-out background: three background scores, one face score
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], dim=1)
            out += [conf, getattr(self, f"{name}_mbox_loc")(feats[name])]
        return out


def _syncnet_python_names() -> dict[str, str]:
    """syncnet_python's module names -> ours (parameter suffixes .weight/.bias are kept)."""
    names = {}
    vgg_index, i = [], 0
    for name, _, _ in _BACKBONE:  # Conv, ReLU (+ MaxPool) per layer in its nn.ModuleList
        vgg_index.append((i, name))
        i += 3 if name in _POOL_AFTER else 2
    vgg_index += [(i, "fc6"), (i + 2, "fc7")]
    names.update({f"vgg.{k}": n for k, n in vgg_index})
    names.update({f"extras.{k}": n for k, n in enumerate(["conv6_1", "conv6_2", "conv7_1", "conv7_2"])})
    names.update({f"L2Norm{n}": f"conv{n}_norm" for n in ("3_3", "4_3", "5_3")})
    for level, (name, _) in enumerate(_LEVELS):
        names[f"loc.{level}"] = f"{name}_mbox_loc"
        names[f"conf.{level}"] = f"{name}_mbox_conf"
    return names


SYNCNET_PYTHON_NAMES = _syncnet_python_names()


def load_s3fd(path: str | Path, device: str | torch.device = "cpu") -> tuple[S3FDNet, str]:
    """The network from a local state dict in either layout, in eval mode; also the channel order it wants."""
    path = Path(path)
    hint = ("point filters.syncnet.detector_weights at a local S3FD state dict (face_alignment's "
            "s3fd-619a316812.pth or syncnet_python's detectors/s3fd/weights/sfd_face.pth)")
    if not path.is_file():
        raise FileNotFoundError(f"S3FD weights {path} do not exist; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file
        raise ValueError(f"{path} is not a weights-only loadable state dict ({e}); {hint}") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict; {hint}")
    syncnet_layout = "vgg.0.weight" in state
    if syncnet_layout:
        renamed = {}
        for key, value in state.items():
            module, _, param = key.rpartition(".")
            renamed[f"{SYNCNET_PYTHON_NAMES.get(module, module)}.{param}"] = value
        state = renamed
    net = S3FDNet(fc6_dilation=6, pool3_ceil=True) if syncnet_layout else S3FDNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"missing keys {missing}" if missing else "", f"unexpected keys {unexpected}" if unexpected else "",
                 f"wrong shapes {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong]}"
                 if wrong else ""]
        raise ValueError(f"{path} is not an S3FD state dict: {'; '.join(p for p in parts if p)}; {hint}")
    net.load_state_dict(state)
    return net.to(device).eval(), "rgb" if syncnet_layout else "bgr"


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou_threshold]
    return keep


def decode(outputs: list[torch.Tensor], score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] (x1 y1 x2 y2, input pixels) and face scores [N] of all anchors above the threshold."""
    all_boxes, all_scores = [], []
    for level in range(len(outputs) // 2):
        conf, loc = outputs[2 * level], outputs[2 * level + 1]
        stride = STRIDES[level]
        prob = torch.softmax(conf[0].float(), dim=0)[1]
        ys, xs = torch.nonzero(prob > score_threshold, as_tuple=True)
        if ys.numel() == 0:
            continue
        d = loc[0][:, ys, xs].float().T.cpu().numpy().astype(np.float64)  # [n, 4]: dx dy dw dh
        anchor = 4.0 * stride
        cx = (xs.cpu().numpy() + 0.5) * stride + d[:, 0] * VARIANCES[0] * anchor
        cy = (ys.cpu().numpy() + 0.5) * stride + d[:, 1] * VARIANCES[0] * anchor
        w = anchor * np.exp(d[:, 2] * VARIANCES[1])
        h = anchor * np.exp(d[:, 3] * VARIANCES[1])
        all_boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        all_scores.append(prob[ys, xs].cpu().numpy().astype(np.float64))
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.concatenate(all_boxes), np.concatenate(all_scores)


class S3FDDetector:
    """FaceDetector on S3FD weights from a local file (see `load_s3fd` for the two accepted layouts)."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", score_threshold: float = 0.8,
                 nms_threshold: float = 0.3):
        if not 0.0 <= score_threshold < 1.0 or not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"score_threshold {score_threshold} must be in [0, 1), nms_threshold {nms_threshold} "
                             "in (0, 1]")
        self.device = torch.device(device)
        self.net, self.channel_order = load_s3fd(weights, self.device)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def _input(self, frame_bgr: np.ndarray) -> torch.Tensor:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"S3FDDetector wants an HxWx3 BGR frame, got shape {frame_bgr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frame_bgr)).to(self.device, torch.float32)
        x = x - torch.tensor(BGR_MEAN, device=self.device)
        if self.channel_order == "rgb":
            x = x.flip(-1)
        return x.permute(2, 0, 1).unsqueeze(0)

    @torch.no_grad()
    def detect(self, frame_bgr: np.ndarray, sizes: tuple[float, float] | None = None) -> list[Box]:
        height, width = frame_bgr.shape[:2]
        boxes, scores = decode(self.net(self._input(frame_bgr)), self.score_threshold)
        found = []
        for i in nms(boxes, scores, self.nms_threshold):
            x1, y1, x2, y2 = boxes[i]
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
            if x2 > x1 and y2 > y1 and math.isfinite(scores[i]):
                found.append(Box(float(x1), float(y1), float(x2), float(y2), float(scores[i])))
        return found
