"""Rotary position embeddings of the two towers.

A head of dimension D rotates D/2 adjacent pairs (x[2i], x[2i+1]). Video splits them over three
axes: T = D/2 - 2*(D/6) temporal pairs, then D/6 for height and D/6 for width. Audio rotates
only the first T pairs (the temporal ones) with every frequency multiplied by
`temporal_rope_scale`, and leaves the rest unrotated. With the scale chosen as video frames per
audio latent, an audio latent and the video frame at the same instant get the same temporal
phase, which is what lets fusion attention line the two up.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_pair_split(head_dim: int) -> tuple[int, int, int]:
    """Number of rotated pairs per axis (time, height, width) for one attention head."""
    pairs = head_dim // 2
    spatial = pairs // 3
    return pairs - 2 * spatial, spatial, spatial


def axis_frequencies(num_pairs: int, theta: float, scale: float = 1.0) -> Tensor:
    """Angular frequency of each pair on one axis, float64 so long positions stay exact."""
    exponents = torch.arange(num_pairs, dtype=torch.float64) * 2 / (2 * num_pairs)
    return scale / theta**exponents


def video_rope_angles(grid: tuple[int, int, int], head_dim: int, theta: float) -> Tensor:
    """Rotation angles [F*H*W, head_dim/2] for tokens laid out frame-major, then row, then column."""
    t_pairs, h_pairs, w_pairs = rope_pair_split(head_dim)
    frames, height, width = grid
    per_axis = [
        torch.outer(torch.arange(size, dtype=torch.float64), axis_frequencies(n, theta))
        for size, n in ((frames, t_pairs), (height, h_pairs), (width, w_pairs))
    ]
    angles = torch.cat(
        [
            per_axis[0][:, None, None, :].expand(frames, height, width, t_pairs),
            per_axis[1][None, :, None, :].expand(frames, height, width, h_pairs),
            per_axis[2][None, None, :, :].expand(frames, height, width, w_pairs),
        ],
        dim=-1,
    )
    return angles.reshape(frames * height * width, head_dim // 2)


def audio_rope_angles(positions: Tensor, head_dim: int, theta: float, temporal_scale: float) -> Tensor:
    """Rotation angles [L, head_dim/2] for audio latents at `positions` (may be fractional)."""
    t_pairs, _, _ = rope_pair_split(head_dim)
    temporal = torch.outer(positions.to(torch.float64), axis_frequencies(t_pairs, theta, temporal_scale))
    # Zero angle leaves a pair unrotated: audio has no spatial axes.
    unrotated = temporal.new_zeros(temporal.shape[0], head_dim // 2 - t_pairs)
    return torch.cat([temporal, unrotated], dim=-1)


def rope_cos_sin(angles: Tensor, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Cos and sin tables in float32 for `apply_rope`, computed once per forward pass."""
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs of x [B, L, H, D] by tables [L, D/2]; computed in float32."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, None, :], sin[:, None, :]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)
