"""The LM training loss: fixture parity (loss, per-position losses, logits, every gradient),
a row computes the same alone as in a batch, the drops' null embeddings (values and where their
gradient comes from), remat equivalence, the converter's null embeddings, and a tiny LM that
overfits two sequences until greedy sampling reproduces one.

One jitted loss-and-gradient (static cfg) is shared by the tests of a config."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landiff_jax.convert import read_safetensors
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import convert_params, lm_rules, load_lm, null_key
from landiff_jax.lm.losses import Drops, draw_drops, init_train_state, lm_loss, train_loss
from landiff_jax.lm.original import lm_config
from landiff_jax.lm.sampler import SampleOptions, sample
from landiff_jax.parity.lm_train import run

# the paper's drops, so that both micro null embeddings exist; T=4: one group of 3 frames + a partial one
CFG = LMConfig.tiny(frames_drop_prob=0.5, motion_score_drop_prob=0.5)
FRAMES = 4
N_CODES = L.num_codes(FRAMES, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length)
LENGTHS = [5, 2, 3]
TOL = dict(atol=2e-5, rtol=2e-5)

loss_and_grad = jax.jit(jax.value_and_grad(lm_loss, has_aux=True), static_argnums=1)
loss_only = jax.jit(lm_loss, static_argnums=1)


@pytest.fixture(autouse=True, scope="module")
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def params(fixtures_dir):
    """The drops case's weights (CFG's sizes, with both micro null embeddings): no init compile."""
    return load_lm(fixtures_dir / "lm_train" / "two_groups_t6_drops" / "model.safetensors", CFG)


def make_batch(key, lengths, width, *, right_padded=(), frames=FRAMES):
    """Random examples: text rows left-padded (right-padded for the rows in `right_padded`)."""
    k_text, k_codes, k_score = jax.random.split(key, 3)
    b, n_codes = len(lengths), L.num_codes(frames, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length)
    slot = np.arange(width)[None, :]
    lengths = np.asarray(lengths)[:, None]
    mask = np.where(np.isin(np.arange(b), right_padded)[:, None], slot < lengths, slot >= width - lengths)
    return {
        "text_embedding": np.asarray(jax.random.normal(k_text, (b, width, CFG.text_dim))),
        "text_mask": mask,
        "codes": np.asarray(jax.random.randint(k_codes, (b, n_codes), 0, CFG.codebook_size)),
        "frames": np.full((b,), frames, np.int32),
        "motion_score": np.asarray(jax.random.uniform(k_score, (b,), maxval=4.0)),
    }


def drops(text, frames, motion):
    return Drops(jnp.asarray(text), jnp.asarray(frames), jnp.asarray(motion))


def video_rows(aux, v):
    """[b V] per-position losses of the video part (the last V targets of every row)."""
    return np.asarray(aux["token_losses"])[:, -1 - v:-1]


@pytest.mark.parametrize("case", ["one_group_t3", "two_groups_t6_drops"])
def test_lm_train_parity(fixtures_dir, case):
    case_dir = fixtures_dir / "lm_train" / case
    checks = run(case_dir, json.loads((case_dir / "meta.json").read_text()))
    failed = [c for c in checks if not c.passed]
    assert checks and not failed, failed
    names = {c.name for c in checks}
    assert {"loss", "logits", "token_losses", "loss_mask", "targets"} <= names
    cfg = lm_config(json.loads((case_dir / "meta.json").read_text())["config"], text_dim=32)
    assert sum(n.startswith("grad ") for n in names) == len(lm_rules(cfg))  # one check per parameter


@pytest.fixture(scope="module")
def batch():
    """Two samples of 5 and 3 text rows, the second right-padded (any padding goes through the mask)."""
    return make_batch(jax.random.key(1), [5, 3], 5, right_padded=[1])


def test_a_row_alone_equals_the_row_in_a_batch(params, batch):
    """The other row (longer text, other padding, other drops) changes nothing in a row's
    losses, and the batch loss is one mean over all loss positions."""
    d = drops([True, False], [False, True], [True, False])
    (loss, aux), _ = loss_and_grad(params, CFG, batch, d)
    v = len(L.video_kinds(FRAMES, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length))
    together = video_rows(aux, v)
    assert np.asarray(aux["loss_mask"]).sum() == 2 * v
    np.testing.assert_allclose(loss, together.mean(), **TOL)
    for i, rows in enumerate([slice(0, 5), slice(0, 3)]):  # each sample's valid text rows, unpadded
        alone = {k: a[i:i + 1] for k, a in batch.items()}
        alone.update(text_embedding=batch["text_embedding"][i:i + 1, rows], text_mask=batch["text_mask"][i:i + 1, rows])
        assert alone["text_mask"].all()
        loss_i, aux_i = loss_only(params, CFG, alone, jax.tree.map(lambda a, i=i: a[i:i + 1], d))
        np.testing.assert_allclose(video_rows(aux_i, v)[0], together[i], **TOL)
        np.testing.assert_allclose(loss_i, together[i].mean(), **TOL)


def test_dropped_text_is_the_null_embedding(params, batch):
    """A dropped sample ignores its text, and its text rows equal what a text MLP whose output
    is the null embedding would give (fc2 = 0, bias = null) for a kept sample."""
    keep_micro = jnp.ones(2, bool)
    (_, dropped), _ = loss_and_grad(params, CFG, batch, drops([False, True], keep_micro, keep_micro))
    other_text = dict(batch, text_embedding=batch["text_embedding"] + 1.0)
    (_, dropped_other), _ = loss_and_grad(params, CFG, other_text, drops([False, True], keep_micro, keep_micro))
    np.testing.assert_array_equal(dropped["logits"][0], dropped_other["logits"][0])
    assert not np.allclose(dropped["logits"][1], dropped_other["logits"][1])

    text_cond = params["text_cond"]
    fc2 = {"kernel": jnp.zeros_like(text_cond["mlp"]["fc2"]["kernel"]), "bias": text_cond["null_text_embedding"]}
    null_mlp = {**text_cond, "mlp": {**text_cond["mlp"], "fc2": fc2}}
    (_, kept_null), _ = loss_and_grad({**params, "text_cond": null_mlp}, CFG, batch,
                                      drops([True, True], keep_micro, keep_micro))
    np.testing.assert_allclose(kept_null["logits"][0], dropped["logits"][0], **TOL)


def test_null_embeddings_get_gradient_only_from_dropped_samples(params, batch):
    """All kept: the three null embeddings get exactly zero gradient. Sample 0 dropped: they get
    a gradient, which another kept sample 1 (new text, codes, micro values) leaves unchanged."""
    nulls = lambda g: {"text": g["text_cond"]["null_text_embedding"], "frames": g["micro_cond"]["null_frames"],
                       "motion_score": g["micro_cond"]["null_motion_score"]}
    _, grads = loss_and_grad(params, CFG, batch, drops([True, True], [True, True], [True, True]))
    for name, g in nulls(grads).items():
        assert not np.any(np.asarray(g)), name

    first_dropped = drops([False, True], [False, True], [False, True])
    _, grads = loss_and_grad(params, CFG, batch, first_dropped)
    other = make_batch(jax.random.key(9), [5, 3], 5, right_padded=[1])
    other = {k: np.concatenate([batch[k][:1], other[k][1:]]) for k in batch}
    _, grads_other = loss_and_grad(params, CFG, other, first_dropped)
    assert not np.allclose(grads["head"]["kernel"], grads_other["head"]["kernel"])
    for (name, g), g_other in zip(nulls(grads).items(), nulls(grads_other).values()):
        assert np.abs(np.asarray(g)).max() > 0, name
        np.testing.assert_allclose(g, g_other, atol=1e-7, rtol=1e-5, err_msg=name)


def test_remat_computes_the_same_loss_and_gradient(params, batch):
    d = draw_drops(CFG, jax.random.key(5), 2)
    (loss, _), grads = loss_and_grad(params, CFG, batch, d)
    (loss_r, _), grads_r = loss_and_grad(params, CFG.replace(remat="dots_saveable"), batch, d)
    np.testing.assert_allclose(loss_r, loss, **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4), grads_r, grads)


def test_draws_and_train_loss():
    released = LMConfig.tiny()
    d = draw_drops(released, jax.random.key(0), 4096)
    assert d.frames_keep is None and d.motion_keep is None
    assert abs(float(jnp.mean(d.text_keep)) - 0.9) < 0.02
    paper = draw_drops(CFG, jax.random.key(0), 4096)
    assert abs(float(jnp.mean(paper.frames_keep)) - 0.5) < 0.03
    assert float(jnp.mean(paper.frames_keep == paper.motion_keep)) < 0.6  # independent draws
    with pytest.raises(ValueError, match="frames_drop_prob is 0"):  # refused before any compute
        lm_loss({}, released, make_batch(jax.random.key(0), [2], 2), Drops(None, jnp.ones(1, bool), None))
    with pytest.raises(ValueError, match="no frame count gives 7 codes"):
        train_loss(CFG, {}, {}, {}, dict(make_batch(jax.random.key(0), [2], 2), codes=np.zeros((1, 7), np.int32)),
                   jax.random.key(0))


def test_converter_creates_or_ignores_micro_null_embeddings(fixtures_dir):
    """The released-form checkpoint fine-tuned with the paper's drops gets N(0, 1/freq) null
    embeddings from the key; a checkpoint holding them loads into a config without drops."""
    released = read_safetensors(fixtures_dir / "lm_train" / "one_group_t3" / "model.safetensors")
    paper_cfg = LMConfig.tiny(frames_drop_prob=0.5, motion_score_drop_prob=0.5)
    params, _ = convert_params(released, paper_cfg, init_key=jax.random.key(3))
    again, _ = convert_params(released, paper_cfg, init_key=jax.random.key(3))
    nulls = np.stack([params["micro_cond"]["null_frames"], params["micro_cond"]["null_motion_score"]])
    np.testing.assert_array_equal(nulls[0], again["micro_cond"]["null_frames"])
    assert not np.allclose(nulls[0], nulls[1])
    assert 0.5 < nulls.std() * paper_cfg.micro_freq_dim**0.5 < 1.5

    with_nulls = read_safetensors(fixtures_dir / "lm_train" / "two_groups_t6_drops" / "model.safetensors")
    assert null_key("frames") in with_nulls
    kept, _ = convert_params(with_nulls, paper_cfg)
    np.testing.assert_array_equal(kept["micro_cond"]["null_frames"], with_nulls[null_key("frames")])
    plain, report = convert_params(with_nulls, LMConfig.tiny())
    assert "null_frames" not in plain["micro_cond"] and sum(report.ignored.values()) == 2


OVERFIT_CFG = LMConfig.tiny(num_layers=1, codebook_size=16, iframe_tokens=4, pframe_tokens=2)
OVERFIT_FRAMES = 3


def test_tiny_lm_overfits_until_greedy_sampling_reproduces_a_sequence():
    """adamw on two sequences (train_loss with its random text drops) until greedy sampling
    without guidance returns the first sequence's codes exactly."""
    cfg = OVERFIT_CFG
    n_codes = L.num_codes(OVERFIT_FRAMES, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length)
    k_text, k_codes, k_init, k_train = jax.random.split(jax.random.key(11), 4)
    batch = {
        "text_embedding": jax.random.normal(k_text, (2, 3, cfg.text_dim)),
        "text_mask": jnp.ones((2, 3), bool),
        "codes": jax.random.randint(k_codes, (2, n_codes), 0, cfg.codebook_size),
        "frames": jnp.full((2,), OVERFIT_FRAMES, jnp.int32),
        "motion_score": jnp.array([1.0, 2.5]),
    }
    trainable, frozen, state = init_train_state(cfg, k_init)
    optimizer = optax.adamw(3e-3, weight_decay=0.01)

    @functools.partial(jax.jit, static_argnums=3)
    def train(trainable, opt_state, key, steps):
        def step(carry, key):
            trainable, opt_state = carry
            (loss, _), grads = jax.value_and_grad(train_loss, argnums=1, has_aux=True)(
                cfg, trainable, frozen, state, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, trainable)
            return (optax.apply_updates(trainable, updates), opt_state), loss

        (trainable, opt_state), losses = jax.lax.scan(step, (trainable, opt_state), jax.random.split(key, steps))
        return trainable, opt_state, losses

    trainable, _, losses = train(trainable, optimizer.init(trainable), k_train, 200)
    assert losses[-1] < 0.05 < losses[0]
    out = sample(trainable, cfg, batch["text_embedding"][:1], batch["text_mask"][:1], num_frames=OVERFIT_FRAMES,
                 motion_score=batch["motion_score"][:1], options=SampleOptions.create(greedy=True))
    np.testing.assert_array_equal(out.codes[0], batch["codes"][0])
