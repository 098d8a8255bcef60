"""Write a generated clip as an mp4 (H.264 video, AAC audio) with PyAV; `probe_av` (the media layer's)
checks one."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from torch import Tensor

from ovi_pl.media.av_clip import probe_av

__all__ = ["probe_av", "write_av_mp4"]


def write_av_mp4(
    path: str | os.PathLike[str],
    frames: Tensor,
    audio: Tensor,
    fps: float,
    sample_rate: int,
    crf: int = 18,
) -> Path:
    """frames: uint8 [3, F, H, W]; audio: float [samples] mono in [-1, 1]. Returns the path written."""
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"frames must be uint8 [3, F, H, W], got {tuple(frames.shape)}")
    if frames.shape[2] % 2 or frames.shape[3] % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sides, got {frames.shape[3]}x{frames.shape[2]}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [samples], got {tuple(audio.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_np = frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()
    audio_np = audio.float().clamp(-1, 1).cpu().numpy().reshape(1, -1)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vstream.width, vstream.height = int(frames.shape[3]), int(frames.shape[2])
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": str(crf)}
        astream = container.add_stream("aac", rate=sample_rate)
        astream.layout = "mono"
        for image in video_np:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        # One float-planar frame; the encoder splits it into its own frame size.
        aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio_np, dtype=np.float32), format="fltp", layout="mono")
        aframe.sample_rate = sample_rate
        aframe.pts = 0
        for packet in astream.encode(aframe):
            container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
    return path
