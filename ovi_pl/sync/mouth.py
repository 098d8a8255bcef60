"""The mouth judge: lip-region motion of each tracked face against the speech envelope, weight-free.

For clips with a face but without SyncNet weights. Faces are found and tracked at the clip's own frame
rate (`faces.track_faces`); for each track, a crop of the lower middle of the face box (where the mouth
is) gives a motion signal, the mean absolute change of its brightness-normalised pixels between
frames; a held first or last picture (a late video track) is left out (`unheld_span`). The audio gives
the log energy of the speech band (300-3000 Hz) per frame. The lag that best correlates the two, within
+-max_lag frames, is the track's offset (SyncNet's sign).

The confidence says how far that peak stands above what unrelated sound and picture give: the peak's
distance from the mean of the correlations with the audio rotated by more than max_lag, in units of
their standard deviation (a z-score). A clip is judged by its most confident track, as SyncNet judges
by its most confident track: the speaker's lips follow the voice, the listeners' do not. The gate on
that confidence is the caller's (curation: `filters.sync.mouth.min_confidence`, calibrated by
bench/sync_accuracy.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .faces import FaceDetector, FaceTrack, detect_in_frames, track_faces
from .lag import audio_windows, best_lag, circular_null, lag_correlation
from .onset import frame_motion

SPEECH_BAND_HZ = (300.0, 3000.0)
MOUTH_CROP = (32, 16)  # width, height of the resampled mouth crop
# Fewer rotated-audio correlations than this give no usable spread (a track barely longer than the lag window).
MIN_NULL_SAMPLES = 12
# A frame that changes by less than this fraction of the clip's median frame-to-frame change repeats the
# one before. Measured on copies of the three sample clips (plain, CRF 32, first picture held 200-500 ms)
# at 96, 160 and 640 px: held copies change by under 0.01x the median, except the last one,
# which the encoder may code differently (up to 0.19x); moving frames by at least 0.22x. So all but that
# last copy are left out, and no moving frame is.
HELD_CHANGE_FRACTION = 0.15


@dataclass(frozen=True)
class MouthSettings:
    frame_width: int = 640         # frames are decoded at this width; mouths are cut from them
    # Faces are found on every other frame (tracking interpolates between): half the detector's work.
    # Detecting on a half-size copy would save four times more but loses the Haar detections of 45-90 px
    # faces (measured on the sample clips), which are the lips this judge can still read.
    detect_every: int = 2
    # Faces of every size are searched for on every 8th frame; the detect frames between look only for
    # sizes near the faces seen (`detect_in_frames`): 0.7 s less detector time per clip and the same
    # tracks on the three sample clips; two of the sync bench's 48 copies of the stage clip, whose small
    # faces the cascade finds only now and then, changed outcome (bench/RESULTS.md, "CPU stages, old path
    # and new, after cheaper face detection").
    search_every: int = 8
    min_track_frames: int = 48     # 2 s at 24 fps: shorter tracks hold too few syllables to correlate
    max_gap_frames: int = 12
    iou_threshold: float = 0.3
    # Pixels at frame_width. Smaller mouths are a few pixels high; 52 rather than 40 because every track
    # that decided a judgement in bench/sync_accuracy.py held >= 54 px detections, and the detector's
    # smallest scales are its dearest (bench/RESULTS.md, "Cheaper face detection for the mouth judge").
    min_face_size: float = 52.0
    max_lag: int = 15


@dataclass(frozen=True)
class MouthJudgement:
    offset: int                    # frames at the clip's rate; positive: audio before video
    confidence: float              # z-score of the peak against rotated audio
    peak: float                    # correlation at the best lag
    track: int                     # index of the deciding track
    num_faces: int                 # face tracks found


def speech_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Log energy of the speech band in a two-frame window around each video frame."""
    hop = sample_rate / fps
    win = int(2 ** np.ceil(np.log2(2 * hop)))
    windows = audio_windows(np.asarray(audio, np.float64), sample_rate, fps, num_frames, win, centre=True)
    spectra = np.abs(np.fft.rfft(windows * np.hanning(win), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    band = (freqs >= SPEECH_BAND_HZ[0]) & (freqs <= SPEECH_BAND_HZ[1])
    return np.log(spectra[:, band].sum(axis=1) + 1e-6)


def mouth_box(box: np.ndarray) -> tuple[float, float, float, float]:
    """The mouth region of a face box (x1, y1, x2, y2): the middle 64 % of its width, from 62 % to 100 %
    of its height (frontal detectors put the box's lower edge at the chin)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    return cx - 0.32 * w, y1 + 0.62 * h, cx + 0.32 * w, y1 + 1.0 * h


def mouth_crops(frames: list[np.ndarray], track: FaceTrack) -> np.ndarray:
    """[T, 16, 32] grey mouth crops along a track (boxes median-smoothed against detector jitter)."""
    import cv2
    from scipy.signal import medfilt

    boxes = track.boxes.copy()
    k = min(9, len(boxes) if len(boxes) % 2 else len(boxes) - 1)
    if k >= 3:
        boxes = np.stack([medfilt(boxes[:, j], k) for j in range(4)], axis=1)
    crops = []
    for index, box in zip(track.frames, boxes):
        frame = frames[int(index)]
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = mouth_box(box)
        xa, xb = int(max(0, x1)), int(min(width, max(x1 + 2, x2)))
        ya, yb = int(max(0, y1)), int(min(height, max(y1 + 2, y2)))
        grey = cv2.cvtColor(frame[ya:yb, xa:xb], cv2.COLOR_BGR2GRAY)
        crops.append(cv2.resize(grey, MOUTH_CROP, interpolation=cv2.INTER_AREA))
    return np.stack(crops).astype(np.float32)


def mouth_motion(crops: np.ndarray) -> np.ndarray:
    """Mean absolute change of the brightness-normalised crop between frames (the first frame scores 0)."""
    return frame_motion(crops - crops.mean(axis=(1, 2), keepdims=True))


def unheld_span(motion: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the frames between a held first picture and a held last picture, from `frame_motion`.

    A video track that starts after the sound reaches a clip as its first picture repeated until it starts
    (curation keeps the source's timing). A repeated picture shows nothing, not stillness: its zero motion
    would correlate with whatever the sound does meanwhile (on the sample close-up, this judge read a 200 ms
    late picture 7 frames the other way, confidently). The span keeps one copy of each held picture."""
    change = np.asarray(motion[1:])  # change[i]: frame i + 1 against frame i
    if not len(change):
        return 0, len(motion)
    still = change < HELD_CHANGE_FRACTION * np.median(change)
    lead = len(still) if still.all() else int(np.argmin(still))
    trail = len(still) if still.all() else int(np.argmin(still[::-1]))
    return lead, len(motion) - trail


def judge_frames(frames: list[np.ndarray], audio: np.ndarray, sample_rate: int, fps: float,
                 detector: FaceDetector, settings: MouthSettings = MouthSettings()) -> MouthJudgement | None:
    """The mouth judge on decoded BGR frames and the clip's mono audio; None when no face track is long enough."""
    tracks = track_faces(detect_in_frames(frames, detector, every=settings.detect_every,
                                          search_every=settings.search_every),
                         settings.min_track_frames, max(settings.max_gap_frames, settings.detect_every),
                         settings.iou_threshold, settings.min_face_size)
    start, stop = unheld_span(frame_motion(np.stack([frame[::4, ::4].mean(axis=2) for frame in frames])))
    tracks = [cut for track in tracks
              if len(cut := track.within(start, stop)) >= settings.min_track_frames]
    if not tracks:
        return None
    envelope = speech_envelope(audio, sample_rate, fps, len(frames))
    best: MouthJudgement | None = None
    for i, track in enumerate(tracks):
        motion = mouth_motion(mouth_crops(frames, track))
        speech = envelope[track.frames]
        offset, peak = best_lag(lag_correlation(speech, motion, settings.max_lag))
        null = circular_null(speech, motion, settings.max_lag + 1)
        spread = float(null.std()) if len(null) >= MIN_NULL_SAMPLES else 0.0
        confidence = (peak - float(null.mean())) / spread if spread > 0 else 0.0
        if best is None or confidence > best.confidence:
            best = MouthJudgement(offset, round(confidence, 4), round(peak, 4), i, len(tracks))
    return best


def judge_clip(video: str | Path, audio: np.ndarray, detector: FaceDetector, sample_rate: int = 16000,
               settings: MouthSettings = MouthSettings()) -> MouthJudgement | None:
    """The mouth judge on a clip file (decoded once, at `settings.frame_width`) and its mono audio."""
    from ovi_pl.media.frames import iter_frames, video_info

    fps = video_info(video).fps
    if not fps:
        raise ValueError(f"{video}: the video stream declares no frame rate")
    frames = list(iter_frames(video, width=settings.frame_width))
    return judge_frames(frames, audio, sample_rate, fps, detector, settings)

