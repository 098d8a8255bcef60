"""SyncNet's offset and confidence for one face track (syncnet_python's rule, DESIGN.md section 3).

Each 5-frame lip window is compared with the MFCC windows of the audio shifted by -vshift..+vshift
video frames; the distance curve averaged over the track has its minimum at the shift where sound
and lips agree. offset = vshift - argmin(mean distance) in frames at 25 fps; positive when the sound comes before
the picture (audio delayed by d frames gives -d), confidence = median(mean distance) - min(mean distance): a sharp, deep minimum is a
confident sync, a flat curve (a silent or dubbed face) is not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mfcc import mfcc
from .model import SyncNet

FPS = 25
SAMPLE_RATE = 16000
WINDOW_FRAMES = 5            # lip frames per embedding (0.2 s)
MFCC_PER_FRAME = 4           # 100 MFCC frames/s over 25 video frames/s
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS


@dataclass(frozen=True)
class SyncResult:
    offset: int          # video frames at 25 fps
    confidence: float
    min_dist: float
    num_frames: int      # lip frames scored


def sync_scores(lip_embeddings: torch.Tensor, audio_embeddings: torch.Tensor, vshift: int) -> SyncResult:
    """The offset/confidence rule on precomputed embeddings ([N, D] each, window i of both at frame i)."""
    n = min(len(lip_embeddings), len(audio_embeddings))
    if n == 0:
        raise ValueError("no complete 5-frame window to score; the face track is shorter than 5 frames")
    lips, audio = lip_embeddings[:n], audio_embeddings[:n]
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    shifts = 2 * vshift + 1
    # dists[i, s]: lip window i against the audio window at i + s - vshift (zeros past the ends, as the reference).
    windows = padded.unfold(0, shifts, 1).permute(0, 2, 1)[:n]             # [n, shifts, D]
    dists = torch.linalg.vector_norm(lips[:, None, :] - windows + 1e-6, dim=-1)
    mean = dists.mean(dim=0)
    min_dist, argmin = torch.min(mean, dim=0)
    return SyncResult(offset=int(vshift - int(argmin)), confidence=float(torch.median(mean) - min_dist),
                      min_dist=float(min_dist), num_frames=n + WINDOW_FRAMES - 1)


@torch.no_grad()
def score_track(model: SyncNet, crops: np.ndarray, audio: np.ndarray, vshift: int = 15,
                batch_size: int = 20, device: str = "cpu") -> SyncResult:
    """Score one track: `crops` [T, 224, 224, 3] BGR uint8 at 25 fps, `audio` float32 mono 16 kHz in [-1, 1]
    covering the same time span."""
    if crops.ndim != 4 or crops.shape[1:] != (224, 224, 3):
        raise ValueError(f"crops must be [T, 224, 224, 3] BGR frames, got shape {crops.shape}")
    # int16 scale: what the released weights were trained with (scipy wavfile samples).
    cc = mfcc(np.asarray(audio, dtype=np.float64) * 32768.0)
    count = min(len(crops), cc.shape[1] // MFCC_PER_FRAME) - WINDOW_FRAMES + 1
    if count <= 0:
        raise ValueError(f"track too short to score: {len(crops)} frames, {len(audio) / SAMPLE_RATE:.2f} s of audio")
    video = torch.from_numpy(crops).to(device)
    cct = torch.from_numpy(cc).to(device)
    lips, auds = [], []
    for start in range(0, count, batch_size):
        idx = range(start, min(count, start + batch_size))
        lip_in = torch.stack([video[i:i + WINDOW_FRAMES] for i in idx]).permute(0, 4, 1, 2, 3).float()
        aud_in = torch.stack([cct[:, i * MFCC_PER_FRAME:(i + WINDOW_FRAMES) * MFCC_PER_FRAME] for i in idx])[:, None]
        lips.append(model.forward_lips(lip_in).cpu())
        auds.append(model.forward_audio(aud_in.float()).cpu())
    return sync_scores(torch.cat(lips), torch.cat(auds), vshift)
