"""A tiny model sharded over 8 forced CPU devices gives the unsharded outputs."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import flax.linen as nn, jax, jax.numpy as jnp, numpy as np
    from landiff_jax import nn as lnn
    from landiff_jax.parallel import make_mesh, shard_params, batch_sharding

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            h = lnn.RMSNorm()(x)
            q = lnn.dense(32, ("embed", "heads"), name="q")(h).reshape(*x.shape[:2], 4, 8)
            a = lnn.dot_product_attention(q, q, q).reshape(x.shape[:2] + (32,))
            x = x + lnn.dense(16, ("heads", "embed"), name="o")(a)
            return x + lnn.GatedMlp(hidden=64)(lnn.RMSNorm()(x)), None

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            x, _ = lnn.scan_layers(Block, 2, in_axes=(nn.broadcast,))(x, None)
            return x

    model = Tiny()
    x = jax.random.normal(jax.random.key(1), (8, 6, 16))
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    params = nn.meta.unbox(model.init(jax.random.key(0), x)["params"])
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    ref = apply(params, x)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sharded = shard_params(params, abstract, mesh)
    assert len(jax.devices()) == 8
    assert sharded["layers"]["GatedMlp_0"]["gate"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    out = apply(sharded, jax.device_put(x, batch_sharding(mesh, 3)))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
    print("SHARDED_OK")
    """
)


def test_sharded_equals_unsharded():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED_OK" in result.stdout
