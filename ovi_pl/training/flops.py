"""Analytic training FLOPs of a tower, for throughput and MFU logging.

Counts the matrix multiplications of one forward pass (2 FLOPs per multiply-add) and triples
it for forward + backward, the usual MFU convention: recomputation by activation checkpointing
and the weight gradients skipped for frozen parameters are not subtracted, so MFU compares
across freezing presets and checkpointing settings.
"""

from __future__ import annotations

from ovi_pl.models.ovi.config import TowerConfig


def training_flops(cfg: TowerConfig, batch: int, tokens: int, other_tokens: int) -> float:
    """FLOPs of one training step of a tower over `tokens` per sample.

    other_tokens: the other modality's sequence length seen by fusion attention (0: no fusion).
    """
    d, text = cfg.dim, cfg.text_len
    per_token_macs = (
        4 * d * d  # self-attention q, k, v, o
        + 2 * d * d  # cross-attention q, o
        + 2 * d * cfg.ffn_dim  # FFN
        + 2 * tokens * d  # self-attention scores and values
        + 2 * text * d  # text attention scores and values
    )
    if other_tokens:
        per_token_macs += 2 * other_tokens * d  # fusion attention scores and values
    per_sample_macs = cfg.num_layers * (
        tokens * per_token_macs
        + text * 2 * d * d  # text keys and values
        + other_tokens * 2 * d * d  # fusion keys and values
    )
    return 3 * 2 * batch * per_sample_macs
