import pytest
import torch

from ovi_pl.models.ovi import DiTTower, OviFusionModel, get_model_config


def run(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**inputs, **kwargs)


def test_outputs_have_the_shape_of_the_inputs(tiny_model, make_inputs):
    inputs = make_inputs()
    video, audio = run(tiny_model, inputs)
    assert video.shape == inputs["video"].shape
    assert audio.shape == inputs["audio"].shape


def test_fusion_is_bidirectional(tiny_model, make_inputs):
    inputs = make_inputs()
    video, audio = run(tiny_model, inputs)

    other_video = dict(inputs, video=torch.randn_like(inputs["video"]))
    _, audio_after_video_change = run(tiny_model, other_video)
    assert (audio_after_video_change - audio).abs().max() > 1e-3

    other_audio = dict(inputs, audio=torch.randn_like(inputs["audio"]))
    video_after_audio_change, _ = run(tiny_model, other_audio)
    assert (video_after_audio_change - video).abs().max() > 1e-3


def test_without_fusion_layers_a_tower_ignores_the_other_modality(tiny_model, make_inputs):
    # Control for the test above: zeroing the fusion value projections cuts the exchange.
    inputs = make_inputs()
    with torch.no_grad():
        for tower in (tiny_model.video, tiny_model.audio):
            for block in tower.blocks:
                block.cross_attn.v_fusion.weight.zero_()
                block.cross_attn.v_fusion.bias.zero_()
    _, audio = run(tiny_model, inputs)
    _, audio_after_video_change = run(tiny_model, dict(inputs, video=torch.randn_like(inputs["video"])))
    torch.testing.assert_close(audio, audio_after_video_change)


def test_gradients_reach_the_fusion_layers_of_both_towers(tiny_model, make_inputs):
    video, audio = tiny_model(**make_inputs())
    (video.square().mean() + audio.square().mean()).backward()
    fusion_params = {n: p for n, p in tiny_model.named_parameters() if "_fusion." in n}
    # towers x blocks x (pre-norm weight+bias, k weight+bias, v weight+bias, k RMSNorm weight)
    assert len(fusion_params) == 2 * 2 * 7
    for name, p in fusion_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_padded_audio_matches_the_unpadded_sample(tiny_model, make_inputs):
    inputs = make_inputs(batch=1, audio_len=9)
    _, alone = run(tiny_model, inputs)
    padded = dict(inputs, audio=torch.cat([inputs["audio"], torch.randn(1, 4, 20)], dim=1))
    _, in_padded_batch = run(tiny_model, padded, audio_lengths=torch.tensor([9]))
    torch.testing.assert_close(in_padded_batch[:, :9], alone, rtol=1e-4, atol=1e-5)
    _, unmasked = run(tiny_model, padded)
    assert (unmasked[:, :9] - alone).abs().max() > 1e-3


def test_clean_first_frame_conditions_only_through_time(tiny_model, make_inputs):
    inputs = make_inputs()
    video_t2v, _ = run(tiny_model, inputs)
    video_i2v, _ = run(tiny_model, inputs, first_frame_clean=True)
    assert (video_t2v - video_i2v).abs().max() > 1e-3
    # At t = 0 everywhere, marking the first frame clean changes nothing.
    at_zero = dict(inputs, t=torch.zeros(2))
    torch.testing.assert_close(run(tiny_model, at_zero)[0], run(tiny_model, at_zero, first_frame_clean=True)[0])


def test_skipping_a_block_changes_both_outputs(tiny_model, make_inputs):
    inputs = make_inputs()
    video, audio = run(tiny_model, inputs)
    video_slg, audio_slg = run(tiny_model, inputs, skip_block=1)
    assert (video - video_slg).abs().max() > 1e-3 and (audio - audio_slg).abs().max() > 1e-3


def test_activation_checkpointing_gives_the_same_gradients(tiny_model, make_inputs):
    inputs = make_inputs()

    def grads():
        tiny_model.zero_grad()
        video, audio = tiny_model(**inputs)
        (video.sum() + audio.sum()).backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters()}

    plain = grads()
    tiny_model.activation_checkpointing = True
    recomputed = grads()
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], msg=name)


def test_single_tower_forward_for_audio_pretraining(make_inputs):
    tower = DiTTower(get_model_config("ovi-tiny").audio)
    inputs = make_inputs()
    out = tower(inputs["audio"], inputs["t"], inputs["audio_context"], lengths=torch.tensor([13, 5]))
    assert out.shape == inputs["audio"].shape
    assert not any("_fusion" in n for n, _ in tower.named_parameters())


def test_bad_inputs_fail_with_a_clear_message(tiny_model, make_inputs):
    inputs = make_inputs()
    with pytest.raises(ValueError, match="audio lengths"):
        run(tiny_model, inputs, audio_lengths=torch.tensor([13, 14]))
    with pytest.raises(ValueError, match="at most 16"):
        run(tiny_model, dict(inputs, video_context=torch.randn(2, 17, 32)))


def test_meta_model_materialises_with_the_reference_init():
    with torch.device("meta"):
        model = OviFusionModel(get_model_config("ovi-tiny"))
    model.to_empty(device="cpu")
    model.init_weights()
    assert torch.all(model.audio.head.proj.weight == 0)
    assert torch.all(model.video.blocks[0].norm3.weight == 1)
    fresh = OviFusionModel(get_model_config("ovi-tiny"))
    ratio = model.video.blocks[0].cross_attn.k_fusion.weight.std() / fresh.audio.blocks[0].cross_attn.k_fusion.weight.std()
    assert 0.05 < ratio < 0.2  # the video tower's fusion projections start 10x smaller
