"""Device meshes and the one table that maps logical parameter/activation axes to mesh axes.

Every parameter is created with logical axis names (`embed`, `heads`, `mlp`, `vocab`,
`layers`, ...). `RULES` says which mesh axis (`data`, `fsdp`, `tensor`) each is split over;
changing the mesh, not the model, moves the same code from one CPU to a pod.

Generation on a mesh runs per device inside `shard_map` (so that our Pallas kernels, which XLA's
partitioner does not split, stay on): the guided DiT splits its guidance batch over the `data`
and `fsdp` axes that divide it (CFG-parallel) and each sequence over the other axes
(`guided_layout`, `SequenceSplit`: Ulysses-style sequence parallelism); the LM with replicated
weights splits its guidance rows over the axes that divide them (`batch_axes`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
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


def batch_axes(mesh: Mesh, rows: int, candidates: Sequence[str] = MESH_AXES) -> tuple[str, ...]:
    """The mesh axes among `candidates` (in order; those of size > 1) whose combined size
    divides `rows`, taken greedily: the axes a batch of `rows` is split over."""
    axes, size = [], 1
    for name in candidates:
        if mesh.shape[name] > 1 and rows % (size * mesh.shape[name]) == 0:
            axes.append(name)
            size *= mesh.shape[name]
    return tuple(axes)


def axes_size(mesh: Mesh, axes: Sequence[str]) -> int:
    return math.prod(mesh.shape[a] for a in axes)


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
    """Inside `shard_map`: sequences of `length` tokens cut into `size` contiguous chunks of
    `chunk` tokens (the last padded at its end), chunk i on the device at index i along the
    mesh `axes`. Static and hashable (a module attribute)."""

    axes: tuple[str, ...]
    size: int
    length: int

    @property
    def chunk(self) -> int:
        return -(-self.length // self.size)

    @property
    def padding(self) -> int:
        return self.chunk * self.size - self.length

    def positions(self):
        """[chunk] int32: the positions in the whole sequence of this device's tokens."""
        return jax.lax.axis_index(self.axes) * self.chunk + jnp.arange(self.chunk)

    def local(self, x, axis: int = 1):
        """This device's chunk of x, which holds whole sequences along `axis` on every device."""
        x = jnp.pad(x, [(0, self.padding if a == axis else 0) for a in range(x.ndim)])
        return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(self.axes) * self.chunk, self.chunk, axis)

    def gather(self, x, axis: int = 1):
        """The whole sequences (padding dropped) from every device's chunk x along `axis`."""
        return jax.lax.slice_in_dim(jax.lax.all_gather(x, self.axes, axis=axis, tiled=True), 0, self.length,
                                    axis=axis)

    def heads_to_devices(self, x):
        """[b chunk h d] chunks -> [b length H/size d]: whole sequences of this device's heads
        (all-to-all); h is padded with zero heads to H, the next multiple of `size`."""
        heads = -(-x.shape[2] // self.size) * self.size
        x = jnp.pad(x, ((0, 0), (0, 0), (0, heads - x.shape[2]), (0, 0)))
        return jax.lax.all_to_all(x, self.axes, split_axis=2, concat_axis=1, tiled=True)[:, :self.length]

    def heads_to_chunks(self, x, heads: int):
        """Inverse of `heads_to_devices`: [b length H/size d] -> [b chunk heads d]."""
        x = jnp.pad(x, ((0, 0), (0, self.padding), (0, 0), (0, 0)))
        return jax.lax.all_to_all(x, self.axes, split_axis=1, concat_axis=2, tiled=True)[:, :, :heads]


@dataclasses.dataclass(frozen=True)
class GuidedLayout:
    """How the guided DiT runs on a mesh: its network batch ([uncond; cond] rows) split over
    the `batch` axes (CFG-parallel), each sequence over the `sequence` axes (sequence-parallel)."""

    batch: tuple[str, ...]
    sequence: tuple[str, ...]

    def split(self, mesh: Mesh, length: int) -> SequenceSplit | None:
        return SequenceSplit(self.sequence, axes_size(mesh, self.sequence), length) if self.sequence else None


def guided_layout(mesh: Mesh, rows: int) -> GuidedLayout:
    """By the mesh's shape: the guidance batch of `rows` over the `data` and `fsdp` axes that
    divide it, the sequence over every other axis of size > 1 (`tensor`, and those left over).
    E.g. for 2 rows, mesh (data, fsdp, tensor) = (2, 1, 4): CFG 2 × SP 4; (1, 1, 8): CFG 1 × SP 8."""
    batch = batch_axes(mesh, rows, ("data", "fsdp"))
    return GuidedLayout(batch, tuple(a for a in MESH_AXES if mesh.shape[a] > 1 and a not in batch))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
