"""The EMA codebook of the tokenizer's vector quantizer in training (vector_quantize_pytorch 1.19.2,
Euclidean, one head), as pure functions of explicit state and explicit draws.

State (the tokenizer's `model_state["codebook"]`, never touched by the optimizer):
  embed [K d] · embed_avg [K d] · cluster_size [K] · initted bool []
One step over the batch's projected vectors z [n d] (n = B·L):
  1. k-means initialisation when not initted (`kmeans_init`);
  2. codes = nearest code of the codebook from BEFORE the update (`nearest_codes`);
  3. EMA of every code, used or not (`ema_update`);
  4. codes whose EMA cluster size fell under the threshold are replaced, in increasing code order,
     by batch vectors (`expire_codes`).
Random rows are drawn as the original does: a permutation of the n vectors when n ≥ the number
wanted, else independent integers (`sample_rows`); the draws can be injected (`rows_as_draws`).
The gradient through the quantizer is the rotation trick (`rotate_to`) or the straight-through
identity (`straight_through`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from landiff_jax.tokenizer.quantizer import euclidean_distances

_HIGHEST = jax.lax.Precision.HIGHEST


def init_state(embed, initted: bool):
    """A codebook state as vector_quantize_pytorch builds it: cluster sizes 1, embed_avg = embed."""
    embed = jnp.asarray(embed, jnp.float32)
    return {
        "embed": embed,
        "embed_avg": embed,
        "cluster_size": jnp.ones(embed.shape[:1], jnp.float32),
        "initted": jnp.asarray(initted),
    }


# ---- random rows ----------------------------------------------------------------------------
def draw_rows(key, num_vectors: int, size: int):
    """Both alternatives of the original's sampler for up to `size` rows of `num_vectors`:
    {"permutation": the first `size` entries of a permutation (zero-padded when shorter),
     "randint": `size` independent integers}. Which one is read depends on how many rows are
    wanted (`sample_rows`); the draws are made before that number is known, so that it may be traced."""
    k_perm, k_int = jax.random.split(key)
    perm = jax.random.permutation(k_perm, num_vectors)[:size]
    perm = jnp.pad(perm, (0, size - perm.shape[0]))
    return {"permutation": perm.astype(jnp.int32),
            "randint": jax.random.randint(k_int, (size,), 0, num_vectors, jnp.int32)}


def sample_rows(draws, num_vectors: int, wanted):
    """Row indices [size] whose first `wanted` entries are used: randperm(n)[:wanted] if
    n ≥ wanted else randint(0, n, (wanted,)), n = num_vectors (`wanted` may be traced)."""
    return jnp.where(num_vectors >= wanted, draws["permutation"], draws["randint"])


def rows_as_draws(rows, num_vectors: int, size: int):
    """Recorded rows [m] (the original's draw for m wanted rows) as the draws `sample_rows` reads
    for m: placed in the alternative it selects, zero-padded to `size`; the other one is zeros."""
    rows = jnp.asarray(rows, jnp.int32)
    if rows.ndim != 1 or rows.shape[0] > size:
        raise ValueError(f"recorded rows must be a vector of at most {size} indices, got shape {rows.shape}")
    padded = jnp.pad(rows, (0, size - rows.shape[0]))
    zeros = jnp.zeros((size,), jnp.int32)
    if num_vectors >= rows.shape[0]:
        return {"permutation": padded, "randint": zeros}
    return {"permutation": zeros, "randint": padded}


# ---- codes ----------------------------------------------------------------------------------
def nearest_codes(vectors, embed):
    """vectors [n d], embed [K d] → (codes [n] int32, distances [n K]); ties go to the lower code."""
    dist = euclidean_distances(vectors, embed)
    return jnp.argmin(dist, axis=-1).astype(jnp.int32), dist


def _assign(vectors, codes, num_codes: int):
    """(counts [K], sums [K d]) of the vectors assigned to each code."""
    onehot = jax.nn.one_hot(codes, num_codes, dtype=jnp.float32)  # n k
    return onehot.sum(axis=0), jnp.einsum("nk,nd->kd", onehot, vectors, precision=_HIGHEST)


def _lerp(old, new, weight: float):
    return old + weight * (new - old)  # torch.lerp's form for weight < 0.5


# ---- k-means initialisation -----------------------------------------------------------------
def kmeans(vectors, init_rows, num_iters: int):
    """Lloyd's k-means from the vectors at init_rows [K]: (means [K d], bins [K]), bins being the
    cluster sizes of the last assignment; a code left empty keeps its previous mean."""
    num_codes = init_rows.shape[0]

    def step(carry, _):
        means, _ = carry
        codes, _ = nearest_codes(vectors, means)
        bins, sums = _assign(vectors, codes, num_codes)
        new = sums / jnp.maximum(bins, 1.0)[:, None]
        return (jnp.where((bins == 0)[:, None], means, new), bins), None

    start = (vectors[init_rows], jnp.zeros((num_codes,), jnp.float32))
    (means, bins), _ = jax.lax.scan(step, start, None, length=num_iters)
    return means, bins


def kmeans_init(state, vectors, init_rows, num_iters: int):
    """The state unchanged when initted; else k-means means as embed, their sizes as cluster_size,
    embed_avg = embed · cluster_size, initted True."""

    def init(_):
        means, bins = kmeans(vectors, init_rows, num_iters)
        return {"embed": means, "embed_avg": means * bins[:, None], "cluster_size": bins,
                "initted": jnp.asarray(True)}

    return jax.lax.cond(state["initted"], lambda _: state, init, None)


# ---- EMA and dead codes ---------------------------------------------------------------------
def ema_update(state, vectors, codes, decay: float, eps: float):
    """EMA of cluster sizes and vector sums for ALL codes, then embed = embed_avg over the
    Laplace-smoothed cluster sizes."""
    counts, sums = _assign(vectors, codes, state["embed"].shape[0])
    cluster_size = _lerp(state["cluster_size"], counts, 1.0 - decay)
    embed_avg = _lerp(state["embed_avg"], sums, 1.0 - decay)
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + cluster_size.shape[0] * eps) * total
    return {**state, "cluster_size": cluster_size, "embed_avg": embed_avg, "embed": embed_avg / smoothed[:, None]}


def expire_codes(state, vectors, row_draws, threshold: float):
    """Codes with cluster_size < threshold → (new state, expired [K] bool). The i-th expired code
    (increasing order) becomes vectors[rows[i]], rows = sample_rows(row_draws, n, #expired); its
    cluster_size becomes `threshold` and its embed_avg threshold · vector."""
    expired = state["cluster_size"] < threshold
    rows = sample_rows(row_draws, vectors.shape[0], expired.sum())
    rank = jnp.maximum(jnp.cumsum(expired) - 1, 0)  # i for the i-th expired code
    new = vectors[rows[rank]]  # k d
    keep = ~expired
    return {
        **state,
        "embed": jnp.where(keep[:, None], state["embed"], new),
        "embed_avg": jnp.where(keep[:, None], state["embed_avg"], threshold * new),
        "cluster_size": jnp.where(keep, state["cluster_size"], threshold),
    }, expired


# ---- gradient through the quantizer ---------------------------------------------------------
def _norm(x):
    return jnp.linalg.norm(x, axis=-1, keepdims=True)


def rotate_to(x, code):
    """The rotation trick: (x R)·(|c|/|x|) with R = I − 2wwᵀ + 2uqᵀ, u = x/|x|, q = c/|c|,
    w = (u+q)/|u+q|, R and the scale held constant. Its value is the code c; its gradient to x is
    (|c|/|x|)·R instead of the identity. x, code [..., d]."""
    sg = jax.lax.stop_gradient
    nx, nc = sg(_norm(x)), _norm(code)
    u = sg(x) / jnp.maximum(nx, 1e-6)
    q = code / jnp.maximum(nc, 1e-6)
    w = (u + q) / jnp.maximum(_norm(u + q), 1e-12)
    u, q, w = sg(u), sg(q), sg(w)
    dot = lambda a, b: jnp.sum(a * b, axis=-1, keepdims=True)
    rotated = x - 2.0 * dot(x, w) * w + 2.0 * dot(x, u) * q
    return rotated * sg(nc / jnp.maximum(nx, 1e-6))


def straight_through(x, code):
    """Value the code, gradient the identity to x."""
    return x + jax.lax.stop_gradient(code - x)
