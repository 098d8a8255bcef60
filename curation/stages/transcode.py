"""Transcode each clip: 24 fps H.264 + AAC mp4 of exactly `num_frames` frames, and 16 kHz mono FLAC."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from data_specs.geometry import target_size

from ..config import ClipConfig, TranscodeConfig
from ovi_pl.media.frames import frame_cache_args
from ovi_pl.media.tools import FFMPEG, count_video_frames, ffprobe_json, run_tool
from ..stage import Row, Stage
from ..thumbnails import StripOutput, work_thumbs_dir


# Audio that starts after the picture (a container offset) keeps its place: aresample pads the gap from
# time 0 with silence instead of letting the first sample move to 0; apad + -t make it last the clip.
_ALIGNED_AUDIO = "aresample=async=1:first_pts=0,apad"
# HDR transfer functions (PQ, and HLG as phones record by default), as ffprobe and zscale name them.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
# HDR to SDR at the clip's size: to linear light with the HDR reference white (203 cd/m2, ITU-R BT.2408) at
# 1.0, BT.2020 primaries to BT.709, highlights above it rolled off (mobius: linear up to 0.3, no clipping;
# colours kept, desat=0), then BT.709's transfer in limited range, as SDR clips are coded.
_HDR_TO_SDR = ("zscale=tin={transfer}:pin=bt2020:min=bt2020nc:t=linear:npl=203,format=gbrpf32le,zscale=p=bt709,"
               "tonemap=tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p")
FRAME_CACHE_SUFFIX = ".frames.mov"


class TranscodeClips(Stage):
    name: ClassVar[str] = "transcode"

    def __init__(self, transcode: TranscodeConfig, clip: ClipConfig, clips_dir: str):
        self.transcode = transcode
        self.clip = clip
        self.clips_dir = clips_dir

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [self._transcode(row) for row in rows]

    def _size_filter(self, row: Row) -> str:
        if self.transcode.target_area is None:
            return "scale=trunc(iw/2)*2:trunc(ih/2)*2"  # H.264 with yuv420p needs even sides
        height, width = target_size(row["probe"]["height"], row["probe"]["width"], self.transcode.target_area)
        return f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"

    def _transcode(self, row: Row) -> Row:
        c, t = self.clip, self.transcode
        out_dir = Path(self.clips_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        mp4, flac = out_dir / f"{row['key']}.mp4", out_dir / f"{row['key']}.flac"
        seconds = f"{c.num_frames / c.fps:.6f}"
        # -ss before -i seeks by decoding from the previous keyframe, which is frame-accurate when re-encoding.
        # Without an audio track (probe.require_audio: false) the clip gets digital silence, which the
        # volume filter then judges like any other quiet clip.
        probe = row["probe"]
        silence = [] if probe["has_audio"] else ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]
        audio = "0:a:0" if probe["has_audio"] else "1:a:0"
        # Frames their decoder flags interlaced (broadcast, DV, camcorders) are deinterlaced first, one frame
        # per frame: their woven fields would show as combed edges on everything that moves. The flag is per
        # frame because stream headers often do not say (ffprobe reads DV's field order as unknown); other
        # frames pass untouched. Then the picture is scaled to the size a player shows, square pixels (a
        # no-op for most sources; DV's narrow pixels get stretched), before the clip's size.
        video_filters = (f"bwdif=mode=send_frame:deint=interlaced,fps={c.fps},"
                         f"scale={probe['width']}:{probe['height']},setsar=1,{self._size_filter(row)}")
        # HDR sources (PQ, HLG) would come out dim and grey read as SDR: tone-mapped, after the resize (the
        # float conversion costs per pixel).
        if probe.get("color_transfer") in HDR_TRANSFERS:
            video_filters += "," + _HDR_TO_SDR.format(transfer=probe["color_transfer"])
        # The report's thumbnail strip, from the frames this command decodes anyway.
        strip = StripOutput(work_thumbs_dir(out_dir) / f"{row['key']}.jpg", c.num_frames, video_filters)
        # The frame cache the later stages decode instead of the clip (ovi_pl.media.frames.frame_source):
        # one more output of the frames this command decodes anyway.
        cache = out_dir / f"{row['key']}{FRAME_CACHE_SUFFIX}" if t.frame_cache_width else None
        cache_args = frame_cache_args(cache, t.frame_cache_width, c.num_frames, video_filters) if cache else []
        work_files = [mp4, flac, *([cache] if cache else [])]
        args = [FFMPEG, "-v", "error", "-nostdin", "-y", "-ss", f"{row['start_s']:.6f}", "-i", row["path"], *silence,
                "-map", "0:v:0", "-map", audio,
                "-vf", f"{video_filters},format=yuv420p",
                "-frames:v", str(c.num_frames), "-c:v", "libx264", "-preset", t.preset, "-crf", str(t.crf),
                "-af", _ALIGNED_AUDIO, "-t", seconds, "-c:a", "aac", "-b:a", f"{t.audio_bitrate_kbps}k",
                "-movflags", "+faststart", str(mp4),
                "-map", audio, "-vn", "-af", _ALIGNED_AUDIO, "-t", seconds, "-ac", "1", "-ar", str(c.audio_sample_rate),
                "-sample_fmt", "s16", "-c:a", "flac", str(flac), *strip.args(), *cache_args]
        # Whatever fails (ffmpeg, a short clip, the checks after), nothing of this clip stays in the work dir.
        try:
            run_tool(args, t.timeout_s)
            strip.keep()
            frames = count_video_frames(mp4)
            if frames != c.num_frames:
                # The source ran out of decodable frames before its declared end: damaged inside (the probe
                # stage rejects files cut off at the end) or timestamps that jump (variable frame rate).
                _unlink(*work_files)
                return self.reject(row, "short_clip", f"the source gave {frames} of the clip's {c.num_frames} "
                                   f"frames from {row['start_s']:.2f} s: its video is damaged or its timestamps "
                                   "jump there; re-encode it at a constant frame rate if it plays")
            video = next(s for s in ffprobe_json(mp4)["streams"] if s["codec_type"] == "video")
        except BaseException:
            strip.discard()
            _unlink(*work_files)
            raise
        return {**row, "mp4_path": str(mp4), "flac_path": str(flac), **({"frames_path": str(cache)} if cache else {}),
                "video": {"width": int(video["width"]), "height": int(video["height"]), "num_frames": frames}}


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
