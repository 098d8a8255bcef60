import copy

import torch

from ovi_pl.models.ovi.parallelize import parallelize, sharding_units


def test_sharding_units_cover_everything_a_block_runs_but_its_modulation_and_norm3(tiny_model):
    block = tiny_model.video.blocks[0]
    covered = {id(p) for unit in sharding_units(block) for p in unit.parameters()}
    left = {name for name, p in block.named_parameters() if id(p) not in covered}
    assert left == {"norm3.weight", "norm3.bias", "modulation.offset"}


def test_compiled_blocks_match_eager(tiny_model, make_inputs):
    inputs = make_inputs()
    with torch.no_grad():
        expected = tiny_model(**inputs)
    compiled = parallelize(copy.deepcopy(tiny_model), mesh=None, activation_checkpointing=False, compile_blocks=True)
    with torch.no_grad():
        actual = compiled(**inputs)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
