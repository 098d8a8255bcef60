"""Audio-text score with a CLAP model (transformers `ClapModel` + `ClapProcessor` from a local
directory): 100 x the cosine similarity of the clip's audio and the prompt's audio description."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from transformers import ClapModel, ClapProcessor

from ovi_pl.media.audio import decode_audio


def _embedding(output: Tensor | object) -> Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding.
    emb = output if isinstance(output, Tensor) else output.pooler_output
    return emb / emb.norm(dim=-1, keepdim=True)


class ClapScorer:
    def __init__(self, model_dir: str | os.PathLike[str], device: str = "cpu") -> None:
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a saved CLAP model (no config.json); save ClapModel and "
                                    "ClapProcessor there with save_pretrained")
        self.model = ClapModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.processor = ClapProcessor.from_pretrained(path, local_files_only=True)
        self.device = device

    @torch.no_grad()
    def __call__(self, items: Sequence[tuple[Path, str]]) -> list[float]:
        rate = self.processor.feature_extractor.sampling_rate
        scores = []
        for path, text in items:
            # The whole track (its stated duration: no AAC priming or padding), mono, at the model's rate.
            inputs = self.processor(text=[text], audio=[decode_audio(path, rate)], sampling_rate=rate,
                                    return_tensors="pt", padding=True).to(self.device)
            audio = _embedding(self.model.get_audio_features(
                input_features=inputs["input_features"], is_longer=inputs.get("is_longer")))
            text_emb = _embedding(self.model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
            scores.append(float(100.0 * (audio * text_emb).sum()))
        return scores
