"""landiff_jax.nn.group_norm (added for the VAE, shared) against torch.nn.GroupNorm."""

from __future__ import annotations

import numpy as np
import pytest

from landiff_jax.nn.group_norm import GroupNorm, group_normalize


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 64), (2, 6, 7, 32)])
def test_group_norm_matches_torch(shape, torch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    scale = rng.standard_normal(shape[-1]).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    ref = torch.nn.GroupNorm(32, shape[-1], eps=1e-6)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(scale))
        ref.bias.copy_(torch.from_numpy(bias))
        expected = ref(torch.from_numpy(np.moveaxis(x, -1, 1))).numpy()
    ours = GroupNorm(32, 1e-6).apply({"params": {"scale": scale, "bias": bias}}, x)
    np.testing.assert_allclose(np.moveaxis(np.asarray(ours), -1, 1), expected, atol=2e-5, rtol=1e-5)
    plain = torch.nn.functional.group_norm(torch.from_numpy(np.moveaxis(x, -1, 1)), 32, eps=1e-6).numpy()
    np.testing.assert_allclose(np.moveaxis(np.asarray(group_normalize(x, 32, 1e-6)), -1, 1), plain, atol=2e-5)


def test_group_norm_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="groups"):
        group_normalize(np.zeros((1, 2, 48), np.float32), 32, 1e-6)
