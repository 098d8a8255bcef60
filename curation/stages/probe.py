"""Probe each input: is it whole, readable media with a video and enough sound, and can it make 24 fps clips?

Reasons, structural first (each detail says what was found and what to do):
`not_found`, `unreachable`, `is_directory`, `not_a_file`, `unreadable` (the file cannot be opened or read),
`empty_file`, `not_media` (no container ffmpeg knows: random bytes, a text file), `corrupt_container`
(a known container whose index cannot be read or lists no streams), `truncated` (the file stops before
its declared end), `no_video_stream`, `zero_duration`; then the config's rules: `too_long`,
`resolution_too_small`, `resolution_too_large`, `no_frame_rate`, `low_frame_rate`, `no_audio_stream`,
`short_audio`.

Truncation is found without decoding: for MP4/MOV the top-level boxes are walked by their size fields
(a few reads) and a box running past the end of the file is a cut; for every file, ffprobe reads the
packets of the last seconds (`-read_intervals`, one seek through the index) and a file whose packets
stop well before its declared duration is cut. About 0.2-0.3 s on a 2-hour file, the same order as
ffprobe's own header read; decoding it whole would take minutes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from ..config import ProbeConfig
from ..keys import display_name
from ovi_pl.media.frames import display_size
from ovi_pl.media.tools import FFPROBE, MediaToolError, ffprobe_json, parse_rate, run_tool
from ..stage import Row, Stage
from .discover import DIRECT_SCHEMES

# The last seconds whose packets the truncation check reads (the seek lands on the keyframe before them).
TAIL_S = 5.0
# A file is cut when its packets end more than this before its declared end: 2 s or 2 % of the duration,
# well above muxing slack (a frame or an audio priming delay) and far below a lost half.
TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION = 2.0, 0.02


class _Rejection(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class ProbeInputs(Stage):
    name: ClassVar[str] = "probe"

    def __init__(self, config: ProbeConfig, download_dir: str):
        self.config = config
        self.download_dir = download_dir

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [self._probe(row) for row in rows]

    def _probe(self, row: Row) -> Row:
        try:
            return self._check(row)
        except _Rejection as r:
            return self.reject(row, r.reason, r.detail)

    def _check(self, row: Row) -> Row:
        path = self._localize(row)
        row = {**row, "path": path}
        head, boxes = (b"", None) if path.startswith(DIRECT_SCHEMES) else _inspect_file(path)
        try:
            info = ffprobe_json(path)
        except MediaToolError as exc:
            # Not an error of the pipeline: the file is not media ffmpeg can read. Say which way it is not.
            raise _Rejection(*_why_unreadable(str(exc), head, boxes)) from None
        if boxes is not None and boxes.cut is not None:
            raise _Rejection("truncated", boxes.describe_cut())  # moov first (faststart): ffprobe reads the header
        streams: list[dict[str, Any]] = info.get("streams", [])
        if not streams:
            where = "its index (moov box) lists no readable track" if boxes is not None else \
                "ffprobe reads the container but finds no streams in it"
            raise _Rejection("corrupt_container", f"{where}: the file is damaged; fetch or export it again")
        video = next((s for s in streams if s.get("codec_type") == "video"
                      and not s.get("disposition", {}).get("attached_pic")), None)
        audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
        fmt = info.get("format", {})
        duration = _float(fmt.get("duration")) or _float((video or {}).get("duration")) or 0.0
        probe: dict[str, Any] = {"duration_s": duration, "has_audio": audio is not None,
                                 "format": fmt.get("format_name")}
        if video is not None:
            # The size a player shows (turned upright, pixels made square), which transcoding gives the clip.
            width, height = display_size(video)
            probe.update(width=width, height=height,
                         fps=parse_rate(video.get("avg_frame_rate")) or parse_rate(video.get("r_frame_rate")),
                         video_codec=video.get("codec_name"), color_transfer=video.get("color_transfer"))
        if audio is not None:
            probe.update(audio_codec=audio.get("codec_name"), audio_sample_rate=int(audio.get("sample_rate") or 0),
                         audio_channels=int(audio.get("channels") or 0))
        row["probe"] = probe
        try:
            return self._judge(row, path, streams, video, audio, fmt, duration)
        except _Rejection as r:
            return self.reject(row, r.reason, r.detail)  # keeps row["probe"] for the manifest's source_* columns

    def _judge(self, row: Row, path: str, streams: list[dict], video: dict | None, audio: dict | None,
               fmt: dict, duration: float) -> Row:
        c, probe = self.config, row["probe"]
        if video is None:
            kinds = [f"{s.get('codec_type', '?')} ({s.get('codec_name', '?')})" for s in streams]
            hint = ": an audio file with a video extension?" if all(s.get("codec_type") == "audio" for s in streams) \
                else ""
            raise _Rejection("no_video_stream", f"no video stream; streams found: {', '.join(kinds)}{hint}")
        if duration <= 0:
            raise _Rejection("zero_duration", "ffprobe reports no duration: the container does not say how long "
                             "it is (an unfinished recording?); remux it, e.g. ffmpeg -i in -c copy out.mp4")
        start = _float(fmt.get("start_time")) or 0.0
        ends_at = _packets_end(path, start + max(0.0, duration - TAIL_S))
        tolerance = max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * duration)
        if ends_at is None or ends_at - start < duration - tolerance:
            found = f"no packet of its last {TAIL_S:.0f} s can be read" if ends_at is None else \
                f"its packets end at {ends_at - start:.2f} s"
            raise _Rejection("truncated", f"the file declares {duration:.2f} s but {found}: it was cut off (an "
                             "interrupted download, copy or recording); fetch or export it again")
        if duration > c.max_duration_s:
            raise _Rejection("too_long", f"{duration:.0f} s > probe.max_duration_s {c.max_duration_s:.0f}; raise "
                             "probe.max_duration_s to take it")
        w, h = probe["width"], probe["height"]
        if min(w, h) < c.min_side:
            raise _Rejection("resolution_too_small", f"{w}x{h}: a side is under probe.min_side {c.min_side} "
                             "(a thumbnail or a broken header)")
        if max(w, h) > c.max_side:
            raise _Rejection("resolution_too_large", f"{w}x{h}: a side is over probe.max_side {c.max_side} (a "
                             "broken header or a panorama); raise probe.max_side if the source really is this large")
        fps = probe["fps"]
        if not fps:
            raise _Rejection("no_frame_rate", "the video stream declares no frame rate")
        if fps < c.min_fps:
            raise _Rejection("low_frame_rate", f"{fps:.3g} fps < probe.min_fps {c.min_fps:g}: a 24 fps clip of it "
                             f"repeats each frame {24 / fps:.1f} times on average; lower probe.min_fps to keep it")
        if audio is None:
            if c.require_audio:
                raise _Rejection("no_audio_stream", "video without an audio track; joint audio-video training "
                                 "needs sound (probe.require_audio: false keeps it, with silence)")
        elif c.require_audio:  # without it, silence in place of missing audio is accepted anyway
            coverage = _audio_coverage(video, audio)
            if coverage is not None and coverage < c.min_audio_coverage:
                v = _stream_duration(video)
                raise _Rejection("short_audio", f"the audio covers {coverage * v:.2f} s of the {v:.2f} s video "
                                 f"({coverage:.1%}) < probe.min_audio_coverage {c.min_audio_coverage:.0%}: the "
                                 "rest of its clips would be silence; trim the video to its audio or lower "
                                 "probe.min_audio_coverage")
        return self.with_scores(row, area=float(w * h))

    def _localize(self, row: Row) -> str:
        """A path ffmpeg and OpenCV can open: local files as they are, fsspec URLs copied to local disk."""
        location = row.get("location") or row["uri"]
        if "://" not in location or location.startswith(DIRECT_SCHEMES):
            return location
        import fsspec

        target = Path(self.download_dir) / f"{row['input_id']}{Path(location.split('://', 1)[1]).suffix}"
        if target.exists():
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        name = display_name(location)
        try:
            with fsspec.open(location, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            tmp.replace(target)
        except IsADirectoryError:
            raise _Rejection("is_directory", f"{name} is a directory: list its files, or name it in inputs.paths "
                             "to search it") from None
        except FileNotFoundError:
            if _is_remote_dir(location):
                raise _Rejection("is_directory", f"{name} is a directory (a prefix): list its files, or name it in "
                                 "inputs.paths to search it") from None
            raise _Rejection("not_found", f"nothing at {name}; fix the manifest line or restore the object") from None
        except Exception as exc:  # noqa: BLE001 - credentials, network, a missing fsspec backend: the input's fault
            raise _Rejection("unreachable", f"cannot download it ({type(exc).__name__}: {str(exc)[:300]}); check "
                             "the URL, the workers' credentials and network (or install the fsspec backend the "
                             "error names)") from None
        finally:
            tmp.unlink(missing_ok=True)
        return str(target)


def _is_remote_dir(url: str) -> bool:
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        return bool(fs.isdir(root))
    except Exception:  # noqa: BLE001
        return False


def _inspect_file(path: str) -> tuple[bytes, _Boxes | None]:
    """The first bytes of a local file and its MP4 box layout; rejects what cannot be media at all."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _Rejection("not_found", f"{display_name(path)} does not exist on this worker (it was there at "
                         "discovery): it was removed, or on a multi-node cluster it is not on a file system the "
                         "workers share") from None
    except OSError as exc:
        raise _Rejection("unreadable", f"cannot look at it ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _Rejection("is_directory", "a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        raise _Rejection("not_a_file", "not a regular file: give the media file itself")
    if st.st_size == 0:
        raise _Rejection("empty_file", "the file is empty (0 bytes): a failed download, copy or export; fetch or "
                         "export it again")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            boxes = _scan_boxes(f, st.st_size)
    except OSError as exc:
        raise _Rejection("unreadable", f"cannot read it ({exc.strerror}); fix its permissions for the user "
                         "running the pipeline") from None
    return head, boxes


# ------------------------------------------------------------------ MP4/MOV (ISO base media file format) boxes

# Boxes an MP4/MOV file starts with; anything else at byte 0 is not one.
_ISO_FIRST = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"sidx", b"junk"}
_FOURCC = re.compile(rb"[\x20-\x7e\xa9]{4}")
_MAX_BOXES = 100_000  # fragmented files have a moof+mdat pair per fragment; stop counting somewhere


@dataclass
class _Boxes:
    """The top-level boxes of an MP4/MOV file, read from their headers alone."""

    size: int
    types: list[bytes] = field(default_factory=list)
    cut: tuple[bytes, int] | None = None      # (box type, byte its declared size ends at) past the end of file

    def has_index(self) -> bool:
        return b"moov" in self.types

    def describe_cut(self) -> str:
        box, end = self.cut or (b"?", 0)
        kind = box.decode("latin-1")
        missing = "; the index (moov box) is not in the part that is there" if not self.has_index() else ""
        return (f"the file ends at byte {self.size:,} inside its '{kind}' box, which declares {end:,} bytes "
                f"({1 - self.size / end:.0%} of the file is missing){missing}: it was cut off (an interrupted "
                "download, copy or recording); fetch or export it again")


def _scan_boxes(f: BinaryIO, size: int) -> _Boxes | None:
    """Walk the top-level boxes by their size fields (a seek and a 16-byte read each); None if the file
    does not start like an MP4/MOV."""
    boxes = _Boxes(size)
    offset = 0
    while offset < size and len(boxes.types) < _MAX_BOXES:
        f.seek(offset)
        head = f.read(16)
        box_type = head[4:8]
        if len(head) < 8 or not _FOURCC.fullmatch(box_type):
            if offset == 0:
                return None
            if len(head) < 8:
                boxes.cut = (b"head", offset + 8)
            break  # trailing bytes that are not a box: leave them to ffprobe
        box_size = struct.unpack(">I", head[:4])[0]
        if offset == 0 and box_type not in _ISO_FIRST:
            return None
        if box_size == 1:  # 64-bit size follows the type
            if len(head) < 16:
                boxes.cut = (box_type, offset + 16)
                break
            box_size = struct.unpack(">Q", head[8:16])[0]
        elif box_size == 0:  # runs to the end of the file
            box_size = size - offset
        if box_size < 8:
            if offset == 0:
                return None
            break
        boxes.types.append(box_type)
        if offset + box_size > size:
            boxes.cut = (box_type, offset + box_size)
            break
        offset += box_size
    return boxes


# Signatures of the other containers the default extensions name (mkv/webm, avi) and a few more.
_MAGIC = ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"RIFF", "RIFF (AVI)"), (b"FLV", "FLV"), (b"OggS", "Ogg"),
          (b"\x00\x00\x01\xba", "MPEG program stream"), (b"\x30\x26\xb2\x75", "ASF/WMV"))


def _why_unreadable(message: str, head: bytes, boxes: _Boxes | None) -> tuple[str, str]:
    """The reason and detail for a file ffprobe cannot open."""
    if boxes is not None:
        if boxes.cut is not None:
            return "truncated", boxes.describe_cut()
        if not boxes.has_index() and b"moof" not in boxes.types:
            return "truncated", ("an MP4/MOV with media data but no index (moov box): the recording or export "
                                 "stopped before it was finished; export it again (tools such as untrunc rebuild "
                                 "the index from a good file of the same camera)")
        return "corrupt_container", (f"an MP4/MOV whose index (moov box) cannot be read: {message}; the file is "
                                     "damaged: fetch or export it again")
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind is None and len(head) >= 377 and head[0] == head[188] == head[376] == 0x47:
        kind = "MPEG transport stream"  # a sync byte every 188 bytes
    if kind is not None:
        return "corrupt_container", f"a damaged {kind} file ({message}); fetch or export it again"
    if not head:  # read in place (http): ffprobe's message is all there is
        if "404" in message:
            return "not_found", f"the server has nothing at this URL ({message}); fix the URL"
        return "unreadable", f"ffprobe cannot read it: {message}; check the URL and the workers' network"
    if "did not finish" in message:
        return "unreadable", f"ffprobe cannot read it: {message}"
    return "not_media", (f"not a media file: it starts with no container signature ffmpeg knows (bytes "
                         f"{head[:8].hex(' ')}) and ffprobe cannot read it ({message}); if it should be a video, "
                         "fetch it again")


# ------------------------------------------------------------------ packets and durations


def _packets_end(path: str, from_s: float, timeout_s: float = 120.0) -> float | None:
    """The end time of the last packet ffprobe can read after seeking to `from_s` (None: no packet at all).

    Reads packets, decodes nothing: one seek through the index to the keyframe before `from_s`, then the
    packets to the end of the file. A file cut off inside its media data has none left there (or they end
    early), whatever its header declares.
    """
    try:
        proc = run_tool([FFPROBE, "-v", "error", "-read_intervals", f"{from_s:.3f}%", "-show_entries",
                         "packet=pts_time,dts_time,duration_time", "-of", "json", path], timeout_s)
    except MediaToolError:
        return float("inf")  # cannot seek or read there: no evidence of a cut; the clip stages will say more
    end = None
    for packet in json.loads(proc.stdout or b"{}").get("packets", []):
        t = _float(packet.get("pts_time"))
        t = _float(packet.get("dts_time")) if t is None else t
        if t is not None:
            t += _float(packet.get("duration_time")) or 0.0
            end = t if end is None else max(end, t)
    return end


def _stream_duration(stream: dict) -> float | None:
    """Seconds of one stream: its duration, or Matroska's DURATION tag (HH:MM:SS.nnnnnnnnn)."""
    value = _float(stream.get("duration"))
    if value:
        return value
    tag = (stream.get("tags") or {}).get("DURATION") or (stream.get("tags") or {}).get("duration")
    if isinstance(tag, str) and tag.count(":") == 2:
        h, m, s = tag.split(":")
        try:
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            return None
    return None


def _audio_coverage(video: dict, audio: dict) -> float | None:
    """The fraction of the video's duration the audio stream lasts (None when either is unknown)."""
    v, a = _stream_duration(video), _stream_duration(audio)
    if not v or a is None:
        return None
    return min(1.0, a / v)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
