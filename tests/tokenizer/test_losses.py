"""Tokenizer training: fixture parity of the training step, the EMA codebook and dead-code
replacement against hand computations, the rotation trick against its closed form, the codebook
state converter. (A tiny tokenizer learning through the trainer: tests/train/test_stage_tasks.py.)"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.convert import CheckpointError, read_safetensors
from landiff_jax.parity import tokenizer_train as train_parity
from landiff_jax.tokenizer import codebook, losses
from landiff_jax.tokenizer.convert import convert_params, convert_train_state, read_mean_std, tokenizer_rules
from landiff_jax.tokenizer.original import tokenizer_train_config


def _cases(root):
    return sorted(p.parent for p in root.glob("tokenizer_train/*/meta.json"))


# ---- fixture parity ---------------------------------------------------------------------------
def test_public_cases_pass(fixtures_dir, torch):
    cases = _cases(fixtures_dir)
    assert len(cases) >= 2, f"expected the public tokenizer_train cases under {fixtures_dir / 'tokenizer_train'}"
    expired_somewhere = False
    for case in cases:
        meta = json.loads((case / "meta.json").read_text())
        checks = train_parity.run(case, meta)
        failed = [c for c in checks if not c.passed]
        assert checks and not failed, f"{case.name}: {failed}"
        names = {c.name for c in checks}
        assert {"loss_total", "loss_IFrame", "loss_PFrame", "indices", "expired_mask", "codebook_embed_after",
                "post_ema_embed", "dead_code_replaced_with", "re_features"} <= names
        cfg = tokenizer_train_config(meta["config"])
        torch_keys = [k for r in tokenizer_rules(cfg.model) if f"grad {r.param}" in names for k in r.key_list]
        assert len(torch_keys) == meta["grads"]["n"], (len(torch_keys), meta["grads"]["n"])
        expired_somewhere |= len(np.load(case / "io.npz")["dead_code_sample_index"]) > 0
    assert expired_somewhere, "no public case replaces dead codes"


def test_train_state_converter(fixtures_dir, torch):
    case = fixtures_dir / "tokenizer_train" / "normfeat_t2_expire"
    meta = json.loads((case / "meta.json").read_text())
    io = np.load(case / "io.npz")
    cfg = tokenizer_train_config(meta["config"])
    assert cfg.normalize and cfg.rotation_trick and cfg.threshold_ema_dead_code == 2.0 and cfg.decay == 0.8
    state, report = convert_train_state(read_safetensors(case / "model.safetensors"), cfg)
    np.testing.assert_array_equal(state["codebook"]["cluster_size"], io["codebook_cluster_size_before"][0])
    np.testing.assert_array_equal(state["codebook"]["embed_avg"], io["codebook_embed_avg_before"][0])
    assert state["codebook"]["initted"].dtype == np.bool_ and bool(state["codebook"]["initted"])
    np.testing.assert_array_equal(state["std"], io["std"])
    assert report.used == 6
    # a converted checkpoint and a from-scratch start give the trainer the same trees
    params, _ = convert_params(read_safetensors(case / "model.safetensors"), cfg.model)
    trainable, frozen = losses.split_params(params)
    fresh = jax.eval_shape(lambda: losses.init_train_state(cfg, jax.random.key(0)))
    assert jax.tree.structure(trainable) == jax.tree.structure(fresh[0]) and frozen == fresh[1] == {}
    assert jax.tree.structure(state) == jax.tree.structure(fresh[2])
    mean, std = read_mean_std(case / "mean_std.pt", 16)
    np.testing.assert_array_equal(mean, io["mean"])
    with pytest.raises(CheckpointError, match=r"expected \(2, 8\)"):
        read_mean_std(case / "mean_std.pt", 8)


# ---- EMA codebook -----------------------------------------------------------------------------
def _state(embed, cluster_size, embed_avg=None):
    embed = np.asarray(embed, np.float32)
    return {"embed": jnp.asarray(embed), "cluster_size": jnp.asarray(cluster_size, jnp.float32),
            "embed_avg": jnp.asarray(embed if embed_avg is None else embed_avg, jnp.float32),
            "initted": jnp.asarray(True)}


def test_ema_update_by_hand():
    embed = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    avg = [[0.5, 0.5], [3.0, 0.0], [0.0, 4.0]]
    vectors = np.array([[0.1, 0.0], [0.9, 0.1], [1.2, -0.2], [0.0, 1.9]], np.float32)
    codes = np.array([0, 1, 1, 2])
    state = codebook.ema_update(_state(embed, [2.0, 3.0, 0.5], avg), vectors, codes, decay=0.8, eps=1e-5)
    # numpy, by the formulas: counts (1, 2, 1); sums per code
    cs = 0.8 * np.array([2.0, 3.0, 0.5]) + 0.2 * np.array([1.0, 2.0, 1.0])
    ea = 0.8 * np.array(avg) + 0.2 * np.array([[0.1, 0.0], [2.1, -0.1], [0.0, 1.9]])
    n = cs.sum()
    e = ea / ((cs + 1e-5) / (n + 3 * 1e-5) * n)[:, None]
    np.testing.assert_allclose(state["cluster_size"], cs, rtol=1e-6)
    np.testing.assert_allclose(state["embed_avg"], ea, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(state["embed"], e, rtol=1e-5)


def test_dead_codes_replaced_in_code_order():
    vectors = np.arange(16, dtype=np.float32).reshape(8, 2)
    state = _state(np.ones((5, 2)), [5.0, 0.1, 3.0, 0.5, 1.0])
    # 3 expired codes (1, 3, 4) and 8 vectors: the draw is a permutation's first 3 entries
    draws = codebook.rows_as_draws(np.array([7, 2, 5]), num_vectors=8, size=5)
    new, expired = codebook.expire_codes(state, vectors, draws, threshold=2.0)
    np.testing.assert_array_equal(expired, [False, True, False, True, True])
    np.testing.assert_array_equal(new["embed"], [[1, 1], vectors[7], [1, 1], vectors[2], vectors[5]])
    np.testing.assert_array_equal(new["cluster_size"], [5.0, 2.0, 3.0, 2.0, 2.0])
    np.testing.assert_array_equal(new["embed_avg"][np.array([1, 3, 4])], 2 * vectors[[7, 2, 5]])
    # 2 vectors for 3 expired codes: the original's randint branch (rows may repeat)
    draws = codebook.rows_as_draws(np.array([1, 1, 0]), num_vectors=2, size=5)
    assert not draws["permutation"].any()
    new, _ = codebook.expire_codes(state, vectors[:2], draws, threshold=2.0)
    np.testing.assert_array_equal(new["embed"][np.array([1, 3, 4])], vectors[[1, 1, 0]])


def test_drawn_rows_follow_the_original_rule():
    draws = codebook.draw_rows(jax.random.key(3), num_vectors=6, size=10)
    few = np.asarray(codebook.sample_rows(draws, 6, 4))[:4]  # 4 ≤ 6: distinct rows of a permutation
    assert len(set(few.tolist())) == 4 and few.max() < 6
    many = np.asarray(codebook.sample_rows(draws, 6, 9))  # 9 > 6: independent integers
    np.testing.assert_array_equal(many, draws["randint"])
    assert many.max() < 6


def test_kmeans_init_only_when_not_initted():
    rng = np.random.default_rng(1)
    centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]], np.float32)
    vectors = (centres[rng.integers(0, 3, 60)] + 0.1 * rng.normal(size=(60, 2))).astype(np.float32)
    fresh = {**_state(np.zeros((3, 2)), np.ones(3)), "initted": jnp.asarray(False)}
    rows = codebook.sample_rows(codebook.draw_rows(jax.random.key(0), 60, 3), 60, 3)
    state = codebook.kmeans_init(fresh, vectors, rows, num_iters=10)
    assert bool(state["initted"])
    order = np.argsort(np.asarray(state["embed"])[:, 0])  # the three centres, in some order
    np.testing.assert_allclose(np.asarray(state["embed"])[order], centres[[2, 1, 0]], atol=0.1)
    counts = np.bincount(np.argmin(((vectors[:, None] - np.asarray(state["embed"])) ** 2).sum(-1), 1), minlength=3)
    np.testing.assert_array_equal(state["cluster_size"], counts)
    np.testing.assert_allclose(state["embed_avg"], np.asarray(state["embed"]) * counts[:, None], rtol=1e-6)
    kept = codebook.kmeans_init({**fresh, "initted": jnp.asarray(True)}, vectors, rows, num_iters=10)
    np.testing.assert_array_equal(kept["embed"], fresh["embed"])


# ---- gradient through the quantizer -----------------------------------------------------------
def test_rotation_trick_value_and_gradient():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    c = rng.normal(size=(3, 4)).astype(np.float32)
    g = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(codebook.rotate_to(x, c), c, atol=1e-5)
    grad_rot = jax.grad(lambda v: jnp.sum(g * codebook.rotate_to(v, c)))(x)
    grad_st = jax.grad(lambda v: jnp.sum(g * codebook.straight_through(v, c)))(x)
    np.testing.assert_allclose(grad_st, g)
    expected = []
    for xi, ci, gi in zip(x.astype(np.float64), c.astype(np.float64), g.astype(np.float64)):
        u, q = xi / np.linalg.norm(xi), ci / np.linalg.norm(ci)
        w = (u + q) / np.linalg.norm(u + q)
        rot = np.eye(4) - 2 * np.outer(w, w) + 2 * np.outer(u, q)  # out = x @ rot · |c|/|x|
        np.testing.assert_allclose(xi @ rot * np.linalg.norm(ci) / np.linalg.norm(xi), ci, atol=1e-9)
        expected.append(np.linalg.norm(ci) / np.linalg.norm(xi) * rot @ gi)
    np.testing.assert_allclose(grad_rot, np.array(expected), rtol=1e-5, atol=1e-6)
    assert np.abs(grad_rot - grad_st).max() > 0.1
