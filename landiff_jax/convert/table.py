"""The key-table engine: explicit rules from our parameter paths to torch keys.

A table is a list of `Rule(param, keys, transform)`. `param` is the '/'-joined path of a
parameter in our params pytree; `keys` is one torch key, or a list of keys whose (transformed)
arrays are stacked on a new leading axis (scanned layers). `convert` checks everything at once
and refuses to produce params if any key is missing, unexpected or misshaped.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import numpy as np
from flax import traverse_util


class ConversionError(Exception):
    """Raised with every problem found, one per line."""

    def __init__(self, problems: Sequence[str], source: str = "checkpoint"):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) converting {source}:\n  " + "\n  ".join(self.problems))


@dataclasses.dataclass(frozen=True)
class Transform:
    """apply: torch array -> our array. source_shape: our shape -> the torch shape expected
    (None when it cannot be derived; then only the result is checked)."""

    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    source_shape: Callable[[tuple], tuple] | None = None


IDENTITY = Transform("identity", lambda a: a, lambda s: tuple(s))
# torch Linear [out, in] -> Dense kernel [in, out]
LINEAR = Transform("linear", lambda a: a.T, lambda s: tuple(s)[::-1])
# torch Conv [out, in, *k] -> Flax Conv [*k, in, out]
CONV = Transform(
    "conv",
    lambda a: np.transpose(a, tuple(range(2, a.ndim)) + (1, 0)),
    lambda s: (s[-1], s[-2]) + tuple(s[:-2]),
)


@dataclasses.dataclass(frozen=True)
class Rule:
    param: str
    keys: str | tuple[str, ...]
    transform: Transform = IDENTITY

    @property
    def stacked(self) -> bool:
        return not isinstance(self.keys, str)

    @property
    def key_list(self) -> tuple[str, ...]:
        return (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)


def layer_keys(template: str, n: int, offset: int = 0) -> tuple[str, ...]:
    """('x.{i}.w' , 3) -> ('x.0.w', 'x.1.w', 'x.2.w')."""
    return tuple(template.format(i=i + offset) for i in range(n))


@dataclasses.dataclass
class ConversionReport:
    used: int
    ignored: dict[str, int]

    def summary(self) -> str:
        ign = ", ".join(f"{n} under '{p}'" for p, n in self.ignored.items() if n) or "none"
        return f"{self.used} keys converted; ignored: {ign}"


def flat_shapes(abstract_params) -> dict[str, tuple[tuple, np.dtype]]:
    """'/'-joined path -> (shape, dtype) of a (possibly boxed) abstract params pytree."""
    flat = traverse_util.flatten_dict(nn.meta.unbox(abstract_params), sep="/")
    return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in flat.items()}


def convert(
    rules: Iterable[Rule],
    state_dict: Mapping[str, np.ndarray],
    abstract_params,
    *,
    ignore_prefixes: Sequence[str] = (),
    source: str = "checkpoint",
):
    """Build our params pytree from `state_dict` following `rules`.

    Every parameter of `abstract_params` needs exactly one rule; every state-dict key must be
    used by some rule or start with one of `ignore_prefixes` (counted in the report). Arrays are
    cast to the parameter's dtype.
    """
    rules = list(rules)
    targets = flat_shapes(abstract_params)
    problems: list[str] = []
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    seen_params: set[str] = set()
    for rule in rules:
        if rule.param not in targets:
            problems.append(f"table names parameter '{rule.param}', which the model does not have")
            continue
        if rule.param in seen_params:
            problems.append(f"table maps parameter '{rule.param}' twice")
        seen_params.add(rule.param)
        shape, dtype = targets[rule.param]
        per_key_shape = shape[1:] if rule.stacked else shape
        arrays = []
        for key in rule.key_list:
            if key not in state_dict:
                exp = rule.transform.source_shape(per_key_shape) if rule.transform.source_shape else "?"
                problems.append(f"missing key '{key}' (for '{rule.param}', expected shape {exp})")
                continue
            used.add(key)
            src = np.asarray(state_dict[key])
            if rule.transform.source_shape is not None:
                exp = tuple(rule.transform.source_shape(per_key_shape))
                if tuple(src.shape) != exp:
                    problems.append(f"key '{key}' has shape {tuple(src.shape)}, expected {exp} (for '{rule.param}')")
                    continue
            arr = rule.transform.apply(src)
            if tuple(arr.shape) != tuple(per_key_shape):
                problems.append(
                    f"key '{key}' has shape {tuple(src.shape)}; after '{rule.transform.name}' "
                    f"{tuple(arr.shape)}, but '{rule.param}' needs {tuple(per_key_shape)}"
                )
                continue
            arrays.append(arr)
        if len(arrays) == len(rule.key_list):
            value = np.stack(arrays) if rule.stacked else arrays[0]
            out[rule.param] = value.astype(dtype)

    for param in sorted(set(targets) - seen_params):
        problems.append(f"parameter '{param}' {targets[param][0]} has no rule in the table")

    ignored = {p: 0 for p in ignore_prefixes}
    for key in state_dict:
        if key in used:
            continue
        prefix = next((p for p in ignore_prefixes if key.startswith(p)), None)
        if prefix is None:
            problems.append(f"unexpected key '{key}' {tuple(np.shape(state_dict[key]))}")
        else:
            ignored[prefix] += 1
    if problems:
        raise ConversionError(problems, source)
    params = traverse_util.unflatten_dict(out, sep="/")
    return params, ConversionReport(used=len(used), ignored=ignored)


class Rules:
    """The one way to write a key table: our parameter paths under `param_prefix`, torch keys
    under `key_prefix`; with `n`, a key is a template over '{i}' stacked on the layers axis.

        t = Rules("dit/main/", "model.diffusion_model.")
        t.dense("time_embed/fc1", "time_embed.0")          # kernel <- .weight (LINEAR), bias <- .bias
        t.norm("layers/input_layernorm", "transformer.layers.{i}.input_layernorm", n=30)
        t.conv("patch_embed", "mixins.patch_embed.proj")   # kernel <- .weight (CONV), bias <- .bias
        t.rules                                            # the list of Rule
    """

    def __init__(self, param_prefix: str = "", key_prefix: str = ""):
        self.param_prefix, self.key_prefix, self.rules = param_prefix, key_prefix, []

    def add(self, param: str, key: str, transform: Transform = IDENTITY, n: int | None = None) -> "Rules":
        key = self.key_prefix + key
        self.rules.append(Rule(self.param_prefix + param, layer_keys(key, n) if n else key, transform))
        return self

    def dense(self, param: str, key: str, bias: bool = True, n: int | None = None) -> "Rules":
        self.add(f"{param}/kernel", f"{key}.weight", LINEAR, n)
        return self.add(f"{param}/bias", f"{key}.bias", IDENTITY, n) if bias else self

    def norm(self, param: str, key: str, n: int | None = None) -> "Rules":
        return self.add(f"{param}/scale", f"{key}.weight", IDENTITY, n).add(f"{param}/bias", f"{key}.bias", IDENTITY, n)

    def conv(self, param: str, key: str, n: int | None = None) -> "Rules":
        return self.add(f"{param}/kernel", f"{key}.weight", CONV, n).add(f"{param}/bias", f"{key}.bias", IDENTITY, n)
