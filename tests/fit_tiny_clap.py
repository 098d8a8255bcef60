"""A tiny CLAP (transformers ClapModel + ClapProcessor) fitted to tell a few kinds of sound apart by their
descriptions, saved with save_pretrained like a released checkpoint, for the evaluation's CLAP scorer.

Each kind of sound (`SOUNDS`: a tone of random pitch and phase, white noise) is drawn
`DRAWS` times and every step pairs one draw of each with the descriptions, so a model that ranks other draws
by their description has learnt the kind of sound, not the samples. The audio tower is HTSAT at a small
spectrogram (128: 2 s of mel frames) so that a fit takes seconds on a CPU.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RATE = 48000  # ClapFeatureExtractor's rate
SECONDS = 1.0
STEPS = 30
DRAWS = 6


def tone(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(RATE * SECONDS)) / RATE
    return 0.5 * np.sin(2 * np.pi * rng.uniform(300, 1200) * t + rng.uniform(0, 2 * np.pi))


def noise(rng: np.random.Generator) -> np.ndarray:
    return 0.3 * rng.standard_normal(int(RATE * SECONDS))


# description -> generator of one random draw (float64 mono at RATE, within [-1, 1])
SOUNDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "a steady whistling tone": tone, "a loud hissing noise": noise}


def fit_tiny_clap(path: Path) -> Path:
    """Train and save the model in `path`; returns `path`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(SOUNDS) * 5, vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    features = ClapFeatureExtractor(truncation="rand_trunc", max_length_s=2)
    processor = ClapProcessor(feature_extractor=features, tokenizer=tokenizer)
    config = ClapConfig(
        text_config=dict(vocab_size=320, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80, projection_dim=16),
        audio_config=dict(hidden_size=64, patch_embeds_hidden_size=8, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1], projection_dim=16, window_size=4, spec_size=128),
        projection_dim=16)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ClapModel(config).train()
    texts = processor.tokenizer(list(SOUNDS), return_tensors="pt", padding=True)
    draws = [processor.feature_extractor([make(rng) for _ in range(DRAWS)], sampling_rate=RATE, return_tensors="pt")
             for make in SOUNDS.values()]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(STEPS):
        pick = [int(i) for i in rng.integers(0, DRAWS, len(draws))]
        audio = {key: torch.stack([d[key][i] for d, i in zip(draws, pick, strict=True)]) for key in draws[0]}
        loss = model(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"],
                     input_features=audio["input_features"], is_longer=audio["is_longer"], return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path
