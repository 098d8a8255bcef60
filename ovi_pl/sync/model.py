"""The SyncNet network (audio and lip streams) with the parameter names of the released `syncnet_v2.model`.

The released file is a plain state dict of the original `S` module, so our attribute names
(`netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`) and the Sequential indices inside them must
match exactly; changing a layer order here breaks loading of the real weights.
Inputs: audio is MFCC [N, 1, 13, 20] (20 MFCC frames = 0.2 s = 5 video frames at 25 fps);
video is [N, 3, 5, 224, 224] BGR pixel values in 0..255, unnormalised (what the weights were trained on).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

EMBED_DIM = 1024


def _conv2d(cin: int, cout: int, kernel: tuple[int, int], padding: tuple[int, int]) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=kernel, stride=(1, 1), padding=padding), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
            padding: tuple[int, int, int]) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout), nn.ReLU()]


def _fc(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Two-stream embedding network; matched audio and lip windows embed close together."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        # Index layout (conv, bn, relu[, pool]) is load-bearing: it yields the released key names.
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            *_conv2d(64, 192, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            *_conv2d(192, 384, (3, 3), (1, 1)),
            *_conv2d(384, 256, (3, 3), (1, 1)),
            *_conv2d(256, 256, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            *_conv2d(256, 512, (5, 4), (0, 0)),
        )
        self.netfcaud = _fc(embed_dim)
        self.netfclip = _fc(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
        )

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """[N, 1, 13, 20] MFCC windows -> [N, embed_dim]."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, 5, 224, 224] lip-region windows -> [N, embed_dim]."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path: str | Path, device: str = "cpu") -> SyncNet:
    """SyncNet with weights from a `syncnet_v2.model`-style state dict (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet weights {path} do not exist; set filters.syncnet.weights to a local "
                                "syncnet_v2.model (syncnet_python's download_model.sh fetches it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and the remedy
        raise ValueError(f"{path}: not loadable as a weights-only state dict ({exc}); re-save it with "
                         "torch.save(state_dict) from a trusted environment") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("__S__.").removeprefix("module."): v for k, v in state.items()}
    model = SyncNet()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked postdates the released file; its absence changes nothing at eval.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a SyncNet (syncnet_v2) state dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval().to(device)
