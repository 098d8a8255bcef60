"""Prompt -> text context for both towers: the umT5-xxl encoder through transformers.

Every prompt is padded to 512 tokens and the embeddings past its true length are zeroed, which
is what the DiT expects (Ovi trims each prompt's embeddings to its length and zero-pads them
back to text_len; text cross-attention has no key mask, so padded rows must be exactly zero).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5EncoderModel


class TextEmbeddings(NamedTuple):
    context: Tensor  # [B, text_len, d_model], zero past each prompt's length
    lengths: Tensor  # [B] token counts, end-of-sequence token included


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning: unescape HTML entities (twice, for double-escaped text) and
    collapse whitespace. Wan also runs ftfy.fix_text, which only repairs mojibake; not done here."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class UMT5TextEncoder:
    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, text_len: int = 512) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str] | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        text_len: int = 512,
    ) -> UMT5TextEncoder:
        """Local directories only: `model_path` holds the encoder (config.json + safetensors), e.g.
        Wan2.2-TI2V-5B-Diffusers/text_encoder; `tokenizer_path` (default: model_path) the tokenizer."""
        model_path = Path(model_path)
        tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else model_path
        for p in (model_path, tokenizer_path):
            if not p.is_dir():
                raise FileNotFoundError(f"{p} is not a directory")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)
        model = UMT5EncoderModel.from_pretrained(model_path, dtype=dtype, local_files_only=True)
        return cls(model.to(device), tokenizer, text_len)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def encode(self, prompts: list[str] | str) -> TextEmbeddings:
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return TextEmbeddings(hidden * mask.unsqueeze(-1).to(hidden.dtype), mask.sum(dim=1).cpu())
