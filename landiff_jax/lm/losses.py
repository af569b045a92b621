"""The semantic LM's training loss: teacher-forced next-token cross entropy over the video part.

Each sample is one left-padded row of the batch, laid out as the sampler's rows are:

    [pad × (n − n_i)] [BOS] [micro × m] [text × n_i] [SOI] codes… [EOI] … [EOS]

(n = the batch's text width, n_i = the sample's text rows, V = the video part from the first
SOI to EOS). It runs through the sampler's own `SemanticLM.forward` (its uncached full-sequence path:
no KV cache, plain causal attention over rows rolled to right padding), so a sample's pads
are never attended by its real positions and its RoPE positions start at its BOS: each
row computes what it would compute alone, as the original's packed varlen attention does.
Logits row p predicts token p+1. Loss targets are the whole video part (SOI, codes, EOI, SOP,
EOP, later SOIs, EOS), never BOS, micro or text rows; the loss is ONE mean over all loss
positions of the batch (the original's F.cross_entropy over the packed loss mask).

Condition drops (classifier-free guidance): `Drops` holds the keep decisions, drawn by
`draw_drops` from a key in the original's order (text, frames, motion_score), or injected.
A dropped text makes every text row the null text embedding (already in hidden space); a
dropped micro key replaces its frequency embedding by its null embedding before its MLP.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import SemanticLM, init_params

BATCH_FIELDS = ("text_embedding", "text_mask", "codes", "frames", "motion_score")


@flax.struct.dataclass
class Drops:
    """Keep decisions per sample ([b] bool; True = the condition is kept). None = that drop is
    off (its probability is 0 in the config); a decision for a micro key without a null
    embedding is refused."""

    text_keep: jax.Array | None = None
    frames_keep: jax.Array | None = None
    motion_keep: jax.Array | None = None


def draw_drops(cfg: LMConfig, key, batch_size: int) -> Drops:
    """keep = U(0,1) > p per sample, for text, frames, motion_score (each from its own subkey)."""
    k_text, k_frames, k_motion = jax.random.split(key, 3)

    def keep(k, p):
        return None if p == 0 else jax.random.uniform(k, (batch_size,)) > p

    return Drops(keep(k_text, cfg.text_drop_prob), keep(k_frames, cfg.frames_drop_prob),
                 keep(k_motion, cfg.motion_score_drop_prob))


def frames_of_codes(cfg: LMConfig, n_codes: int) -> int:
    """The semantic frame count T whose layout holds exactly `n_codes` codes."""
    for frames in range(1, n_codes + 1):
        n = L.num_codes(frames, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length)
        if n == n_codes:
            return frames
        if n > n_codes:
            break
    raise ValueError(f"codes [b {n_codes}]: no frame count gives {n_codes} codes "
                     f"(I-frame {cfg.iframe_tokens}, P-frame {cfg.pframe_tokens}, groups of {cfg.segment_length})")


def video_tokens(cfg: LMConfig, codes):
    """codes [b N] -> the video part's token ids [b V]: structural tokens with the codes in order."""
    kinds = L.video_kinds(frames_of_codes(cfg, codes.shape[1]), cfg.iframe_tokens, cfg.pframe_tokens,
                          cfg.segment_length)
    vocab = L.Vocab(cfg.codebook_size)
    structural = np.array([vocab[k] if k in L.STRUCTURAL else 0 for k in kinds], np.int32)
    code_slots = np.flatnonzero(np.array(kinds) == L.CODE)
    tokens = jnp.broadcast_to(jnp.asarray(structural), (codes.shape[0], len(kinds)))
    return tokens.at[:, code_slots].set(codes.astype(jnp.int32))


def left_padded(text_embedding, text_mask):
    """Move each row's valid text rows to the end, in order (any padding -> left padding);
    padding rows become zeros. [b n t], [b n] -> [b n t], [b n] bool."""
    mask = text_mask.astype(bool)
    order = jnp.argsort(mask.astype(jnp.int32), axis=1, stable=True)  # padding first
    hidden = jnp.where(mask[..., None], text_embedding, 0)
    return jnp.take_along_axis(hidden, order[..., None], axis=1), jnp.take_along_axis(mask, order, axis=1)


def check_batch(cfg: LMConfig, batch) -> None:
    """One-line ValueError for a batch that does not follow the lm example contract."""
    missing = [f for f in BATCH_FIELDS if f not in batch]
    if missing:
        raise ValueError(f"lm batch lacks field(s) {missing} (expected {list(BATCH_FIELDS)})")
    b, n = np.shape(batch["text_mask"])[:2] if np.ndim(batch["text_mask"]) == 2 else (None, None)
    expected = {"text_embedding": (b, n, cfg.text_dim), "text_mask": (b, n), "frames": (b,), "motion_score": (b,)}
    for name, shape in expected.items():
        if b is None or tuple(np.shape(batch[name])) != shape:
            raise ValueError(f"lm batch field '{name}' has shape {tuple(np.shape(batch[name]))}, expected "
                             f"{shape if b is not None else '[b n]'} ([b n {cfg.text_dim}] text, [b n] mask, [b] scalars)")
    if np.ndim(batch["codes"]) != 2 or np.shape(batch["codes"])[0] != b:
        raise ValueError(f"lm batch field 'codes' has shape {tuple(np.shape(batch['codes']))}, expected [{b} N]")
    frames_of_codes(cfg, np.shape(batch["codes"])[1])


def _micro_keep(cfg: LMConfig, drops: Drops, batch_size: int):
    """[b m] keep decisions in cfg.micro_keys order, or None when no micro key is dropped."""
    given = {"frames": drops.frames_keep, "motion_score": drops.motion_keep}
    for key, keep in given.items():
        if keep is not None and cfg.micro_drop_prob(key) == 0:
            raise ValueError(f"Drops decides '{key}' but cfg.{key}_drop_prob is 0 (the model has no null embedding)")
    if all(given.get(k) is None for k in cfg.micro_keys):
        return None
    ones = jnp.ones((batch_size,), bool)
    return jnp.stack([ones if given.get(k) is None else given[k] for k in cfg.micro_keys], axis=1)


def lm_loss(params, cfg: LMConfig, batch, drops: Drops):
    """Teacher-forced loss with explicit drop decisions.

    Returns (loss, aux): aux['logits'] [b W V] float32 of every row position (W = 1 + m + n + V;
    a pad position's logits are meaningless), aux['targets'] [b W] (token p+1 on the loss mask, IGNORE_TOKEN elsewhere),
    aux['loss_mask'] [b W] bool, aux['token_losses'] [b W] (0 off the mask), aux['pads'] [b].
    """
    check_batch(cfg, batch)
    micro_keep = _micro_keep(cfg, drops, np.shape(batch["codes"])[0])
    text_hidden, text_mask = left_padded(jnp.asarray(batch["text_embedding"]), jnp.asarray(batch["text_mask"]))
    b = text_mask.shape[0]
    micro = jnp.stack([jnp.asarray(batch[k], jnp.float32) for k in cfg.micro_keys], axis=1)  # [b m]
    video = video_tokens(cfg, jnp.asarray(batch["codes"]))  # [b V]
    width = 1 + len(cfg.micro_keys) + text_mask.shape[1] + video.shape[1]
    if width > cfg.max_len:
        raise ValueError(f"rows of {width} positions exceed max_len {cfg.max_len}")
    model, variables = SemanticLM(cfg), {"params": params}
    x, pads = model.apply(variables, text_hidden, text_mask, micro, video, False, drops.text_keep, micro_keep,
                          method=SemanticLM.prefix)
    logits, _ = model.apply(variables, x, None, 0, pads, last_only=False, method=SemanticLM.forward)  # [b W V]
    # the video part is the last V positions of every row; rows W-1-V .. W-2 predict it
    v = video.shape[1]
    rows = slice(width - 1 - v, width - 1)
    log_probs = jax.nn.log_softmax(logits[:, rows].astype(jnp.float32), axis=-1)
    video_losses = -jnp.take_along_axis(log_probs, video[..., None], axis=-1)[..., 0]  # [b V]
    token_losses = jnp.zeros((b, width), jnp.float32).at[:, rows].set(video_losses)
    loss_mask = jnp.zeros((b, width), bool).at[:, rows].set(True)
    targets = jnp.full((b, width), L.IGNORE_TOKEN, jnp.int32).at[:, rows].set(video)
    loss = jnp.sum(token_losses) / jnp.sum(loss_mask)
    return loss, {"logits": logits, "targets": targets, "loss_mask": loss_mask, "token_losses": token_losses,
                  "pads": pads}


def merge_params(trainable, frozen):
    """One params tree from the trainable and frozen parts."""
    flat = traverse_util.flatten_dict(trainable)
    flat.update(traverse_util.flatten_dict(frozen))
    return traverse_util.unflatten_dict(flat)


def train_loss(cfg: LMConfig, trainable, frozen, model_state, batch, key):
    """The trainer's loss: draw the condition drops from `key`, then `lm_loss`.

    -> (loss, (metrics, model_state)); metrics: float32 scalars (cross_entropy, loss_positions,
    and the fraction of samples whose text / frames / motion_score was dropped).
    """
    drops = draw_drops(cfg, key, np.shape(batch["codes"])[0])
    loss, aux = lm_loss(merge_params(trainable, frozen), cfg, batch, drops)
    metrics = {"cross_entropy": loss, "loss_positions": jnp.sum(aux["loss_mask"]).astype(jnp.float32)}
    for name, keep in (("text", drops.text_keep), ("frames", drops.frames_keep), ("motion_score", drops.motion_keep)):
        if keep is not None:
            metrics[f"{name}_dropped"] = jnp.mean(~keep).astype(jnp.float32)
    return loss, (metrics, model_state)


def init_train_state(cfg: LMConfig, key):
    """From scratch: (trainable = every LM parameter, frozen = {}, model_state = {})."""
    return init_params(cfg, key), {}, {}


def split_params(params):
    """A converted checkpoint's params -> (trainable, frozen): the LM trains all of them."""
    return params, {}
