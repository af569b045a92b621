"""The key-table engine: stacking, transforms, and errors that name every bad key."""

import jax
import numpy as np
import pytest

from landiff_jax.convert import CONV, LINEAR, ConversionError, Rule, convert, layer_keys

ABSTRACT = {
    "embed": jax.ShapeDtypeStruct((10, 4), np.float32),
    "layers": {"proj": {"kernel": jax.ShapeDtypeStruct((2, 4, 6), np.float32)}},
    "conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 2, 5), np.float32)},
}
RULES = [
    Rule("embed", "emb.weight"),
    Rule("layers/proj/kernel", layer_keys("blocks.{i}.proj.weight", 2), LINEAR),
    Rule("conv/kernel", "conv.weight", CONV),
]


def _state_dict():
    rng = np.random.default_rng(0)
    return {
        "emb.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "blocks.0.proj.weight": rng.standard_normal((6, 4)).astype(np.float32),
        "blocks.1.proj.weight": rng.standard_normal((6, 4)).astype(np.float32),
        "conv.weight": rng.standard_normal((5, 2, 3, 3)).astype(np.float32),
        "loss.disc.weight": np.zeros(3, np.float32),
    }


def test_convert_stacks_and_transposes():
    sd = _state_dict()
    params, report = convert(RULES, sd, ABSTRACT, ignore_prefixes=["loss."])
    np.testing.assert_array_equal(params["layers"]["proj"]["kernel"][1], sd["blocks.1.proj.weight"].T)
    np.testing.assert_array_equal(params["conv"]["kernel"][:, :, 1, 4], sd["conv.weight"][4, 1])
    assert report.ignored == {"loss.": 1} and report.used == 4


def test_convert_names_every_problem():
    sd = _state_dict()
    del sd["blocks.1.proj.weight"]
    sd["conv.weight"] = sd["conv.weight"][:, :1]
    with pytest.raises(ConversionError) as err:
        convert(RULES, sd, ABSTRACT)
    text = str(err.value)
    assert "missing key 'blocks.1.proj.weight'" in text and "(6, 4)" in text
    assert "key 'conv.weight' has shape (5, 1, 3, 3), expected (5, 2, 3, 3)" in text
    assert "unexpected key 'loss.disc.weight'" in text
    assert len(err.value.problems) == 3


def test_unmapped_parameter_is_an_error():
    with pytest.raises(ConversionError, match="parameter 'conv/kernel'"):
        convert(RULES[:2], _state_dict(), ABSTRACT, ignore_prefixes=["loss.", "conv."])
