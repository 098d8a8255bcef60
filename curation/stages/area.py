"""Minimum area filter on the source resolution; runs before cutting so small sources cost nothing more."""
from __future__ import annotations

from typing import ClassVar

from ..config import AreaFilter
from ..stage import Row, Stage


class AreaFilterStage(Stage):
    name: ClassVar[str] = "area"

    def __init__(self, config: AreaFilter):
        self.config = config

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            w, h = row["probe"]["width"], row["probe"]["height"]
            area = float(w * h)
            if area < self.config.min_area:
                out.append(self.reject(row, "low_area", f"{w}x{h} = {w * h} px < filters.area.min_area "
                                       f"{self.config.min_area}", area=area))
            else:
                out.append(self.with_scores(row, area=area))
        return out
