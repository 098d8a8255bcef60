import pytest
import torch

from ovi_pl.training.flops import training_flops
from ovi_pl.models.ovi import get_model_config
from ovi_pl.training.flow_matching import (
    TimestepSampler,
    add_noise,
    drop_text,
    masked_mse,
    shift_noise_level,
    step_generator,
    stratified_noise_levels,
    velocity_target,
)


def test_noisy_latents_interpolate_and_the_velocity_recovers_both_ends():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    s = torch.tensor([0.0, 1.0])
    xs = add_noise(x0, noise, s)
    torch.testing.assert_close(xs[0], x0[0])
    torch.testing.assert_close(xs[1], noise[1])
    s = torch.tensor([0.3, 0.8])
    xs = add_noise(x0, noise, s)
    v = velocity_target(x0, noise)
    # Moving along v from x_s reaches the noise at s = 1 and the data at s = 0.
    torch.testing.assert_close(xs + (1 - s.view(-1, 1, 1)) * v, noise)
    torch.testing.assert_close(xs - s.view(-1, 1, 1) * v, x0)


@pytest.mark.parametrize("kind", ["uniform", "logit_normal", "shifted"])
def test_timestep_samplers_stay_in_range_and_have_their_shape(kind):
    s = TimestepSampler(kind=kind, shift=5.0).sample(20000, torch.Generator().manual_seed(0))
    assert s.min() > 0 and s.max() < 1
    median = s.median().item()
    if kind == "uniform":
        assert abs(median - 0.5) < 0.02
    elif kind == "logit_normal":
        assert abs(median - 0.5) < 0.02 and ((s > 0.27) & (s < 0.73)).float().mean() > 0.6
    else:  # shift 5 maps the uniform median 0.5 to 5*0.5/(1+4*0.5) = 0.833
        assert abs(median - 0.833) < 0.02


def test_shift_matches_the_sampler_formula_and_keeps_end_points():
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(shift_noise_level(s, 5.0), torch.tensor([0.0, 1.25 / 2.0, 2.5 / 3.0, 1.0]))


def test_bad_sampler_settings_are_rejected():
    with pytest.raises(ValueError, match="uniform, logit_normal or shifted"):
        TimestepSampler(kind="cosine")


def test_stratified_levels_are_the_strata_midpoints():
    torch.testing.assert_close(stratified_noise_levels(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_masked_mse_ignores_padding():
    prediction = torch.zeros(2, 4, 3)
    target = torch.ones(2, 4, 3)
    target[1, 2:] = 100.0  # padding of sample 1
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert masked_mse(prediction, target, mask).item() == pytest.approx(1.0)
    assert masked_mse(prediction, target).item() > 1000


def test_text_dropout_zeroes_whole_prompts_at_the_given_rate():
    context = torch.ones(4000, 3, 2)
    dropped = drop_text(context, 0.25, torch.Generator().manual_seed(0))
    per_prompt = dropped.flatten(1)
    assert torch.all((per_prompt == 0).all(1) | (per_prompt == 1).all(1))
    assert abs((per_prompt == 0).all(1).float().mean().item() - 0.25) < 0.03
    assert torch.equal(drop_text(context, 0.0, torch.Generator()), context)


def test_step_generators_repeat_for_the_same_step_and_differ_otherwise():
    def draw(*key: int) -> torch.Tensor:
        return torch.rand(3, generator=step_generator(*key))

    assert torch.equal(draw(0, 5, 1), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5, 1), draw(0, 6, 1))
    assert not torch.equal(draw(0, 5, 1), draw(0, 5, 0))


def test_training_flops_grow_with_tokens_and_depth():
    cfg = get_model_config("ovi-11b")
    base = training_flops(cfg.video, 1, 27280, 157)
    assert training_flops(cfg.video, 2, 27280, 157) == 2 * base
    assert training_flops(cfg.video, 1, 2 * 27280, 157) > 2 * base  # attention is quadratic
    # Dense part alone: 6 x matmul parameters x tokens is the textbook lower bound.
    dense_params = cfg.video.num_layers * (6 * cfg.video.dim**2 + 2 * cfg.video.dim * cfg.video.ffn_dim)
    assert base > 6 * dense_params * 27280
