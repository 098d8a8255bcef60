"""Write a generated clip as an mp4 (H.264 video, AAC audio) with PyAV; `probe_av` (the media layer's)
checks one. The directional tasks pair a generated stream with a given one that ffmpeg copies as
it is (`with_given_stream`)."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from torch import Tensor

from ovi_pl.media.audio import save_wav
from ovi_pl.media.av_clip import probe_av
from ovi_pl.media.tools import FFMPEG, ffprobe_json, run_tool

__all__ = ["probe_av", "with_given_stream", "write_av_mp4"]

# Codecs the mp4 muxer takes; a given stream in another (PCM wav, ProRes) goes into a .mov instead.
MP4_CODECS = {"h264", "hevc", "av1", "vp9", "mpeg4", "aac", "mp3", "alac", "flac", "opus", "ac3", "eac3"}


def write_av_mp4(
    path: str | os.PathLike[str],
    frames: Tensor,
    audio: Tensor | None,
    fps: float,
    sample_rate: int,
    crf: int = 18,
) -> Path:
    """frames: uint8 [3, F, H, W]; audio: float [samples] mono in [-1, 1], or None for a silent
    file (no audio stream). Returns the path written."""
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"frames must be uint8 [3, F, H, W], got {tuple(frames.shape)}")
    if frames.shape[2] % 2 or frames.shape[3] % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sides, got {frames.shape[3]}x{frames.shape[2]}")
    if audio is not None and audio.ndim != 1:
        raise ValueError(f"audio must be mono [samples], got {tuple(audio.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_np = frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vstream.width, vstream.height = int(frames.shape[3]), int(frames.shape[2])
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": str(crf)}
        # Every stream is added before the first packet is muxed (that writes the header).
        astream = None if audio is None else container.add_stream("aac", rate=sample_rate)
        if astream is not None:
            astream.layout = "mono"
        for image in video_np:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is None:
            return path
        audio_np = audio.float().clamp(-1, 1).cpu().numpy().reshape(1, -1)
        # One float-planar frame; the encoder splits it into its own frame size.
        aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio_np, dtype=np.float32), format="fltp", layout="mono")
        aframe.sample_rate = sample_rate
        aframe.pts = 0
        for packet in astream.encode(aframe):
            container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
    return path


def with_given_stream(
    given: str | os.PathLike[str],
    keep: Literal["video", "audio"],
    out_stem: str | os.PathLike[str],
    frames: Tensor | None = None,
    audio: Tensor | None = None,
    fps: float = 24.0,
    sample_rate: int = 16_000,
) -> Path:
    """The first `keep` stream of `given`, copied packet for packet (`-c copy`), with the generated
    other modality: `audio` (video-to-audio, encoded to AAC) or `frames` (audio-to-video, H.264).
    Written to `out_stem` + .mp4, or + .mov when the given stream's codec does not go into an mp4."""
    streams = [s for s in ffprobe_json(given).get("streams", []) if s.get("codec_type") == keep]
    if not streams:
        raise ValueError(f"{given} has no {keep} stream to keep")
    suffix = ".mp4" if streams[0].get("codec_name") in MP4_CODECS else ".mov"
    path = Path(out_stem).with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if keep == "video":
            if audio is None:
                raise ValueError("keeping the given video needs the generated audio")
            generated = save_wav(Path(tmp) / "audio.wav", audio.float().clamp(-1, 1).cpu().numpy(), sample_rate)
            inputs, codecs = [given, generated], ["-c:v", "copy", "-c:a", "aac"]
        else:
            if frames is None:
                raise ValueError("keeping the given audio needs the generated frames")
            generated = write_av_mp4(Path(tmp) / "video.mp4", frames, None, fps, sample_rate)
            inputs, codecs = [generated, given], ["-c", "copy"]
        # Input 0 holds the video, input 1 the audio, in both directions.
        run_tool([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(inputs[0]), "-i", str(inputs[1]),
                  "-map", "0:v:0", "-map", "1:a:0", *codecs, str(path)])
    return path
