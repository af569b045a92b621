"""Device meshes and the one table that maps logical parameter/activation axes to mesh axes.

Every parameter is created with logical axis names (`embed`, `heads`, `mlp`, `vocab`,
`layers`, ...). `RULES` says which mesh axis (`data`, `fsdp`, `tensor`) each is split over;
changing the mesh, not the model, moves the same code from one CPU to a pod.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or None: replicated). Unlisted logical axes are replicated.
RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("length", None),
    ("conv_in", None),
    ("conv_out", "tensor"),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all); one size may be -1 (the rest)."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError("at most one mesh axis size may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not split into axes of sizes {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, have {len(devices)}")
    return Mesh(np.array(devices).reshape(sizes), MESH_AXES)


def param_shardings(abstract_params, mesh: Mesh, rules=RULES):
    """NamedShardings for a params pytree as returned by `jax.eval_shape(model.init, ...)`.

    Boxed (`nn.LogicallyPartitioned`) leaves use their logical names; plain leaves replicate.
    Axes whose size the mesh axis does not divide are replicated instead of failing.
    """
    logical = nn.get_partition_spec(abstract_params)
    shapes = nn.meta.unbox(abstract_params)

    def to_sharding(spec, leaf):
        mesh_spec = nn.logical_to_mesh_axes(tuple(spec), rules) if spec is not None else PartitionSpec()
        fitted = []
        for dim, axis in zip(leaf.shape, tuple(mesh_spec) + (None,) * (len(leaf.shape) - len(mesh_spec))):
            names = (axis,) if isinstance(axis, str) else tuple(axis or ())
            size = math.prod(mesh.shape[a] for a in names)
            fitted.append(axis if size and dim % size == 0 else None)
        return NamedSharding(mesh, PartitionSpec(*fitted))

    return jax.tree.map(to_sharding, logical, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)


def shard_params(params, abstract_params, mesh: Mesh, rules=RULES):
    """Place a plain params pytree onto `mesh` following its logical axis names."""
    return jax.device_put(params, param_shardings(abstract_params, mesh, rules))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Split the leading (batch) axis over data×fsdp, replicate the rest."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def constrain_batch(x, mesh: Mesh | None):
    """Inside jit: split x's leading (batch) axis over the mesh axes (data, fsdp, tensor, in that
    order) whose combined size divides it; a no-op without a mesh."""
    if mesh is None:
        return x
    axes, size = [], 1
    for name in MESH_AXES:
        if mesh.shape[name] > 1 and x.shape[0] % (size * mesh.shape[name]) == 0:
            axes.append(name)
            size *= mesh.shape[name]
    if not axes:
        return x
    spec = PartitionSpec(tuple(axes), *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
