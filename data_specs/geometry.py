"""Training resolutions: the frame size a clip is resized and centre-cropped to.

Curation stores clips at this size and training crops raw clips to it, so both halves share the rule.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

# Ovi trains at 720x1280-sized areas (704x1280, 1280x704, 960x960 are all within 3 % of it).
DEFAULT_TARGET_AREA = 720 * 1280
SIDE_MULTIPLE = 32


def target_size(
    height: int,
    width: int,
    target_area: int = DEFAULT_TARGET_AREA,
    multiple: int = SIDE_MULTIPLE,
    buckets: Sequence[Sequence[int]] | None = None,
) -> tuple[int, int]:
    """(height, width) to resize-and-centre-crop a `height` x `width` clip to.

    With `buckets` ([[h, w], ...]) the bucket whose aspect ratio is closest (in log space) wins;
    otherwise the size of about `target_area` pixels with the clip's aspect ratio, both sides
    rounded to multiples of `multiple` (704x1344 at 720x1280 area gives 704x1312).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size {width}x{height} is empty")
    aspect = math.log(height / width)
    if buckets:
        return tuple(min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - aspect)))  # type: ignore[return-value]
    ratio = height / width
    h = max(multiple, round(math.sqrt(target_area * ratio) / multiple) * multiple)
    w = max(multiple, round(math.sqrt(target_area / ratio) / multiple) * multiple)
    return h, w
