"""Mean volume filter on the clip's 16 kHz mono audio (the paper keeps >= -60 dB)."""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from ovi_pl.media.audio import decode_audio

from ..config import VolumeFilter
from ..stage import Row, Stage

# Digital silence has no finite dB value; shard scores must be finite, so it is floored here
# (ffmpeg's volumedetect reports about -91 dB for 16-bit silence).
SILENCE_DB = -120.0


def mean_volume_db(samples: np.ndarray) -> float:
    """RMS level in dBFS of float samples in [-1, 1]: what ffmpeg volumedetect calls mean_volume."""
    if samples.size == 0:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DB, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DB


class VolumeFilterStage(Stage):
    name: ClassVar[str] = "volume"

    def __init__(self, config: VolumeFilter):
        self.config = config

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            # The clip's FLAC, read in process as stored (16 kHz mono from transcode): no ffmpeg start-up.
            samples = decode_audio(row["flac_path"], sample_rate=None)
            db = round(mean_volume_db(samples), 3)
            if db < self.config.min_mean_volume_db:
                out.append(self.reject(row, "low_volume", f"mean volume {db:.1f} dB < filters.volume."
                                       f"min_mean_volume_db {self.config.min_mean_volume_db}", mean_volume_db=db))
            else:
                out.append(self.with_scores(row, mean_volume_db=db))
        return out
