"""Time to the first video: a component restored straight onto a device in the compute dtype, and
`from_checkpoint(compile_for=...)` compiling every stage from the weights' shapes while they load,
so that the generate call that follows compiles none of them (and gives the same video)."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import checkpoint
from landiff_jax.config import LanDiffConfig
from landiff_jax.pipeline import CompileFor, GenerateOptions, LanDiff, abstract_params


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny random-weight checkpoint written by the project's writer, and its pipeline."""
    cfg = LanDiffConfig.tiny()
    directory = tmp_path_factory.mktemp("checkpoint")
    pipe = LanDiff.random(cfg, seed=1)
    for name, tree in pipe.params.items():
        checkpoint.save_component(directory, name, jax.device_get(tree))
    for component in checkpoint.TEXT_DIRS:
        checkpoint.write_byte_level_tokenizer(directory, component)
    checkpoint.write_config(directory, cfg, converted_from="tests")
    return directory, pipe


def test_restore_onto_a_device_in_the_compute_dtype(written):
    directory, pipe = written
    abstract = abstract_params(pipe.cfg)["vae"]
    device = jax.devices()[-1]
    where = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), pipe.params["vae"])
    restored = checkpoint.load_component(directory, "vae", abstract, shardings=where, dtype=jnp.bfloat16)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(pipe.params["vae"])):
        assert isinstance(got, jax.Array) and got.devices() == {device} and got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want.astype(jnp.bfloat16), np.float32))


class Compiles(logging.Handler):
    """The names of the functions XLA compiles while attached (jax_log_compiles)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of "):
            self.names.append(message.split("Finished XLA compilation of ")[1].split(" in ")[0])


@pytest.mark.slow
def test_compiled_while_loading_so_generate_compiles_no_stage(written):
    directory, reference = written
    prompts, options = ["a red fox"], GenerateOptions(seed=3, steps=2)
    compiles = Compiles()
    logging.getLogger("jax").addHandler(compiles)
    jax.config.update("jax_log_compiles", True)  # (not the context manager: it is thread-local)
    try:
        pipe = LanDiff.from_checkpoint(directory, compile_for=CompileFor(prompts, options))
        ahead = list(compiles.names)
        compiles.names.clear()
        out = pipe.generate(prompts, options, progress=lambda event: None)
    finally:
        jax.config.update("jax_log_compiles", False)
        logging.getLogger("jax").removeHandler(compiles)
    stages = ("encode_ids", "run_steps", "sample_block", "semantic_feature", "_decode_chunked")
    assert all(any(stage in name for name in ahead) for stage in stages), ahead
    assert not [name for name in compiles.names if any(stage in name for stage in stages)], compiles.names
    assert all(a.committed for a in jax.tree.leaves(pipe.params))
    assert pipe.compile_seconds > 0 and pipe.restore_seconds > 0  # the start-up's parts, as generate.py prints them
    np.testing.assert_array_equal(out.videos, reference.generate(prompts, options).videos)
