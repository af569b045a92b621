"""Benchmark of the LM's jitted guided sampler (random weights of the released shapes, on device).

usage: python -m tools.bench.lm --preset full --dtype bfloat16 [--frames 13] [--prompts 1]
       [--text_tokens 64] [--guidance 6.5] [--greedy] [--repeats 3] [--hlo_out FILE] [--matmul_floor]
       [--decode_attention auto|xla|pallas] [--compare]
Prints one JSON line: seconds per call (prefill + all sampled positions), ms per sampled
position, compile seconds, peak device memory, and the fraction of the HBM roofline reached:
(bytes of the decode weights + the KV cache a step needs) per step / bandwidth, against the
nominal 3.0 TB/s and against a bandwidth measured here with a large read-only reduction.
--matmul_floor also times a loop of only the blocks' weight matmuls (same shapes, same unrolled
layers, nothing else): the floor XLA's matmuls reach on this device, to tell matmul efficiency
from per-step overhead.
"""

from __future__ import annotations

import functools
import os
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from landiff_jax import runtime
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import abstract_params, layer_params
from landiff_jax.lm.sampler import SampleOptions, micro_values, sample_loop
from landiff_jax.nn.init import random_params
from tools.bench.common import emit, peak_memory_gb, time_jitted

flags.DEFINE_enum('preset', "tiny", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_integer('frames', 13, "semantic frames (13 -> 1,244 sampled positions)")
flags.DEFINE_integer('prompts', 1, "prompts per call (rows = 2x with guidance)")
flags.DEFINE_integer('text_tokens', 64, 'text tokens')
flags.DEFINE_float('guidance', 6.5, 'guidance')
flags.DEFINE_bool('greedy', False, "argmax instead of a categorical draw")
flags.DEFINE_enum('decode_attention', "auto", ['auto', 'xla', 'pallas'],
                  "attention of the decode steps (auto: runtime's, the Pallas kernel for bf16 on one GPU)")
flags.DEFINE_bool('compare', False, "also run greedy with the other decode attention and "
                   "report how many tokens and how much the guided logits differ")
flags.DEFINE_integer('repeats', 3, 'repeats')
flags.DEFINE_string('xla_flags', "", "appended to XLA_FLAGS before the backend starts "
                   "(e.g. --xla_gpu_enable_dynamic_slice_fusion=true)")
flags.DEFINE_string('hlo_out', "", "write the optimized HLO of the sampler to this file")
flags.DEFINE_bool('matmul_floor', False, "also time a loop of only the weight matmuls")
FLAGS = flags.FLAGS

NOMINAL_BANDWIDTH = 3.0e12  # bytes/s, the H100 figure


def measured_bandwidth(gib: float = 2.0) -> float | None:
    """Bytes/s of a large read-only reduction on device 0 (None on CPU: not an HBM figure)."""
    if jax.default_backend() == "cpu":
        return None
    n = int(gib * 2**30) // 2
    x = jax.jit(lambda k: jax.random.normal(k, (n,), jnp.bfloat16))(jax.random.key(0))
    _, ms = time_jitted(jax.jit(lambda a: jnp.sum(a, dtype=jnp.float32)), x, repeats=10)
    del x
    return n * 2 / (ms / 1e3)


def loop_bodies(hlo_text: str) -> str:
    """The text of every while-loop body computation of an optimized HLO module."""
    names = set(re.findall(r"body=(%[\w.\-]+)", hlo_text))
    starts = {m.group(1): m.start() for m in re.finditer(r"\n(%[\w.\-]+) \(", hlo_text)}
    return "\n".join(hlo_text[starts[n]:hlo_text.index("\n}\n", starts[n])] for n in names if n in starts)


def large_copies(hlo_text: str, min_elements: int = 1 << 20) -> dict:
    """Copies / slicing fusions that write >= min_elements in the optimized HLO: a weight or KV
    slab materialized per step shows up here (diagnostic for the lead's GPU runs)."""
    pattern = re.compile(r"= (\w+)\[([\d,]+)\][^ ]* (copy|fusion)\(")
    found: dict[str, int] = {}
    for line in hlo_text.splitlines():
        match = pattern.search(line)
        name = line.split("=", 1)[0]
        if not match or (match[3] == "fusion" and ("update" in name or not re.search(r"slice|copy", name))):
            continue
        shape = [int(d) for d in match[2].split(",")]
        if int(np.prod(shape)) >= min_elements:
            key = f"{match[1]}[{match[2]}]"
            found[key] = found.get(key, 0) + 1
    return found


def matmul_floor_ms(cfg: LMConfig, params, rows: int, steps: int = 200) -> float:
    """ms per step of a loop doing only the decode step's weight matmuls ([rows, hidden] activations
    through each layer's wqkv, wo, gate, up, down), per-layer weights as the sampler uses them."""
    d = cfg.hidden

    def run(params, x):
        layers = layer_params(params)

        def body(_, x):
            for p in layers:
                x = x + jnp.dot(jnp.dot(x, p["wqkv"]["kernel"].reshape(d, -1))[:, :d], p["wo"]["kernel"].reshape(-1, d))
                mlp = p["mlp"]
                gated = jnp.dot(x, mlp["gate"]["kernel"]) * jnp.dot(x, mlp["up"]["kernel"])
                x = x + jnp.dot(gated, mlp["down"]["kernel"])
            return x * 1e-3
        return jax.lax.fori_loop(0, steps, body, x)

    x = jax.random.normal(jax.random.key(3), (rows, d), cfg.dtype)
    _, ms = time_jitted(jax.jit(run), params, x, repeats=3)
    return ms / steps


def bytes_per_step(cfg: LMConfig, params, rows: int, prefix: int, steps: int) -> dict:
    """Weights a decode step reads (the blocks, final norm and head; one embedding row) and the
    KV cache it needs, averaged over steps (valid slots), or reads (the whole preallocated cache)."""
    per_step = {k: v for k, v in params.items() if k in ("layers", "final_norm", "head")}
    weights = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(per_step))
    weights += cfg.hidden * jnp.dtype(cfg.param_dtype).itemsize
    slot = 2 * cfg.num_layers * rows * cfg.hidden * jnp.dtype(cfg.dtype).itemsize  # k and v of one slot
    return {"weights": weights, "kv_needed": slot * (prefix + (steps - 1) / 2),
            "kv_read": slot * (prefix + steps - 1)}


def sampling_inputs(cfg: LMConfig, frames: int, prompts: int, text_tokens: int, options: SampleOptions):
    """(the sampler with its static arguments bound, its call arguments): random weights of cfg's
    shapes built on the device, random T5 features of `prompts` unpadded prompts."""
    hidden = jax.random.normal(jax.random.key(1), (prompts, text_tokens, cfg.text_dim), cfg.dtype)
    args = (random_params(abstract_params(cfg)), hidden, jnp.ones((prompts, text_tokens), bool),
            jnp.asarray(micro_values(cfg, frames, 2.5, prompts)), jax.random.split(jax.random.key(2), prompts),
            options, None)
    return functools.partial(sample_loop, cfg=cfg, num_frames=frames, trace=False), args


def compare_decode_attention(cfg: LMConfig, frames: int, params, hidden, mask, micro) -> dict:
    """Greedy sampling with the XLA and the Pallas decode attention: the share of equal tokens, the
    first step where they differ, and the largest guided-logit difference before it."""
    options = SampleOptions.create(guidance_scale=6.5, greedy=True)
    runs = [jax.jit(functools.partial(sample_loop, cfg=cfg.replace(decode_attention=impl), num_frames=frames,
                                      trace=True))(
        params, hidden, mask, micro, None, options, None) for impl in ("xla", "pallas")]
    (a, b) = (np.asarray(r.tokens) for r in runs)
    differ = np.flatnonzero((a != b).any(axis=0))
    first = int(differ[0]) if differ.size else a.shape[1]
    logits = [np.asarray(r.guided[:first], np.float64) for r in runs]
    return {"decode_compare_equal_tokens": float((a == b).mean()), "decode_compare_first_difference": first,
            "decode_compare_max_guided_logit_diff": float(np.abs(logits[0] - logits[1]).max()) if first else None,
            "decode_compare_guided_logit_scale": float(np.abs(logits[0]).max()) if first else None}


def main(argv):
    args = FLAGS
    if args.xla_flags:  # read when the backend starts, i.e. at the first computation below
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
    dtype = jnp.dtype(args.dtype)
    auto = runtime.choose(dtype, 64).decode
    decode_impl = auto if args.decode_attention == "auto" else args.decode_attention
    cfg = getattr(LMConfig, args.preset)(dtype=dtype, param_dtype=dtype, decode_attention=decode_impl)
    layout = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, args.frames)
    b, n = args.prompts, args.text_tokens

    options = SampleOptions.create(guidance_scale=args.guidance, greedy=args.greedy)
    start = time.perf_counter()
    sampler, call_args = jax.block_until_ready(sampling_inputs(cfg, args.frames, b, n, options))
    init_s = time.perf_counter() - start
    params, hidden, mask, micro = call_args[:4]
    fn = jax.jit(sampler)
    start = time.perf_counter()
    compiled = fn.lower(*call_args).compile()
    compile_s = time.perf_counter() - start
    _, ms = time_jitted(compiled, *call_args, repeats=args.repeats)
    hlo = compiled.as_text()
    copies, in_loops = large_copies(hlo), large_copies(loop_bodies(hlo))
    if args.hlo_out:
        Path(args.hlo_out).write_text(hlo)

    steps = layout.steps
    rows = b * (2 if options.guidance else 1)
    prefix = 1 + len(cfg.micro_keys) + n + layout.first_step
    traffic = bytes_per_step(cfg, params, rows, prefix, steps)
    step_s = ms / 1e3 / steps
    needed = traffic["weights"] + traffic["kv_needed"]
    figures = {
        "stage": "lm_sample", "preset": args.preset, "dtype": args.dtype, "frames": args.frames, "prompts": b,
        "rows": rows, "text_tokens": n, "guidance": args.guidance, "greedy": args.greedy,
        "sampled_positions": steps, "total_s": round(ms / 1e3, 4), "ms_per_token": round(ms / steps, 4),
        "compile_s": round(compile_s, 2), "init_s": round(init_s, 2),
        "weight_gb_per_step": round(traffic["weights"] / 1e9, 4),
        "kv_gb_per_step_needed_avg": round(traffic["kv_needed"] / 1e9, 4),
        "kv_gb_per_step_read": round(traffic["kv_read"] / 1e9, 4),
        "roofline_ms_per_step_3TBs": round(needed / NOMINAL_BANDWIDTH * 1e3, 4),
        "roofline_fraction_3TBs": round(needed / NOMINAL_BANDWIDTH / step_s, 4),
        "large_copies_in_hlo": copies, "large_copies_in_loops": in_loops, "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if args.matmul_floor:
        floor = matmul_floor_ms(cfg, params, rows)
        figures |= {"matmul_floor_ms_per_step": round(floor, 4),
                    "matmul_floor_tbs": round(traffic["weights"] / floor / 1e9, 3)}
    if args.compare:
        figures |= compare_decode_attention(cfg, args.frames, params, hidden, mask, micro)
    bandwidth = measured_bandwidth()
    if bandwidth:
        figures |= {"measured_bandwidth_tbs": round(bandwidth / 1e12, 3),
                    "roofline_fraction_measured": round(needed / bandwidth / step_s, 4)}
    emit(figures | peak_memory_gb())
    return 0


if __name__ == "__main__":
    app.run(main)
