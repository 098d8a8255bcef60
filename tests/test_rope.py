import math

import torch

from ovi_pl.models.ovi import get_model_config
from ovi_pl.models.ovi.rope import (
    apply_rope,
    audio_rope_angles,
    axis_frequencies,
    rope_cos_sin,
    rope_pair_split,
    video_rope_angles,
)

CFG = get_model_config("ovi-11b")
HEAD_DIM = CFG.video.head_dim
SCALE = CFG.audio.temporal_rope_scale
T_PAIRS = rope_pair_split(HEAD_DIM)[0]


def test_released_head_splits_into_22_21_21_pairs():
    assert rope_pair_split(128) == (22, 21, 21)


def test_audio_and_video_at_the_same_instant_share_the_temporal_phase():
    # A 121-frame clip gives 31 video latent frames and 157 audio latents (DESIGN.md section 2).
    video = video_rope_angles((31, 2, 3), HEAD_DIM, CFG.video.rope_theta).reshape(31, 6, -1)[:, 0, :T_PAIRS]
    for frame in range(31):
        same_instant = torch.tensor([frame / SCALE], dtype=torch.float64)  # the audio position that lines up with this frame
        audio = audio_rope_angles(same_instant, HEAD_DIM, CFG.audio.rope_theta, SCALE)[0]
        torch.testing.assert_close(audio[:T_PAIRS], video[frame], rtol=1e-12, atol=1e-9)
    # Over a real clip the two axes end together: the last audio latent is within a frame of the last video frame.
    last_audio = audio_rope_angles(torch.tensor([156.0]), HEAD_DIM, CFG.audio.rope_theta, SCALE)[0, 0]
    assert abs(last_audio.item() - 30.0) < 1.0


def test_audio_rotates_only_the_temporal_pairs_and_video_uses_all_three_axes():
    audio = audio_rope_angles(torch.arange(157), HEAD_DIM, CFG.audio.rope_theta, SCALE)
    assert audio.shape == (157, HEAD_DIM // 2)
    assert torch.all(audio[:, T_PAIRS:] == 0)
    assert torch.all(audio[1:, :T_PAIRS] > 0)
    video = video_rope_angles((2, 3, 4), HEAD_DIM, 10000.0).reshape(2, 3, 4, -1)
    t, h, w = rope_pair_split(HEAD_DIM)
    torch.testing.assert_close(video[1, 2, 3, :t], axis_frequencies(t, 10000.0))
    torch.testing.assert_close(video[1, 2, 3, t : t + h], 2 * axis_frequencies(h, 10000.0))
    torch.testing.assert_close(video[1, 2, 3, t + h :], 3 * axis_frequencies(w, 10000.0))


def test_rotated_dot_products_depend_only_on_the_position_offset():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM, generator=gen)
    cos, sin = rope_cos_sin(audio_rope_angles(torch.arange(40), HEAD_DIM, 10000.0, SCALE))

    def score(i: int, j: int) -> float:
        qi = apply_rope(q.expand(1, 40, 1, HEAD_DIM), cos, sin)[0, i, 0]
        kj = apply_rope(k.expand(1, 40, 1, HEAD_DIM), cos, sin)[0, j, 0]
        return float(qi @ kj)

    assert math.isclose(score(5, 2), score(30, 27), rel_tol=1e-4)
    assert not math.isclose(score(5, 2), score(5, 20), rel_tol=1e-2)
    rotated = apply_rope(q.expand(1, 40, 1, HEAD_DIM), cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm().expand(1, 40, 1))
