"""Prompt files: Ovi's example csv (`text_prompt`, optional `image_path`) or plain text, one per line.

Each checkpoint reads one audio-description style (Ovi 1.0 `<AUDCAP>..<ENDAUDCAP>`, Ovi 1.1
`Audio: ...`); prompts written in the other style are rewritten, as the reference does.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from data_specs.captions import CaptionStyle, restyle_caption


@dataclass(frozen=True)
class PromptSpec:
    text: str
    image: Path | None = None  # first frame for image-to-video


def read_prompts(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """Relative image paths are taken relative to the prompt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if path.suffix.lower() != ".csv":
        specs = [PromptSpec(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "text_prompt" not in reader.fieldnames:
                raise ValueError(f"{path}: a prompt csv needs a text_prompt column (and optionally image_path); "
                                 f"found {reader.fieldnames}")
            specs = []
            for row in reader:
                image = (row.get("image_path") or "").strip()
                specs.append(PromptSpec(row["text_prompt"].strip(), (path.parent / image) if image else None))
    if not specs:
        raise ValueError(f"{path} holds no prompts")
    return specs


def prompt_texts(specs: list[PromptSpec], caption_style: CaptionStyle | None) -> list[str]:
    """What the text encoder gets: each prompt with its audio description in `caption_style`
    (None: as written)."""
    return [s.text if caption_style is None else restyle_caption(s.text, caption_style) for s in specs]
