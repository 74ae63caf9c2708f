"""Device meshes from a short spec such as "1,-1,1" over the axes (data, fsdp, tensor)."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")


class MeshError(ValueError):
    """A mesh spec that does not fit the devices."""


def parse_mesh_shape(spec: str | tuple[int, ...], num_devices: int) -> tuple[int, ...]:
    """Sizes for (data, fsdp, tensor); one -1 takes whatever the others leave."""
    sizes = tuple(int(s) for s in spec.split(",")) if isinstance(spec, str) else tuple(spec)
    if len(sizes) != len(MESH_AXES):
        raise MeshError(f"mesh {spec!r}: expected {len(MESH_AXES)} sizes for {','.join(MESH_AXES)}")
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise MeshError(f"mesh {spec!r}: sizes must be positive, with at most one -1")
    known = math.prod(s for s in sizes if s != -1)
    if num_devices % known:
        raise MeshError(f"mesh {spec!r}: {known} does not divide the {num_devices} devices")
    sizes = tuple(num_devices // known if s == -1 else s for s in sizes)
    if math.prod(sizes) != num_devices:
        raise MeshError(f"mesh {spec!r} has {math.prod(sizes)} devices, but {num_devices} are present")
    return sizes


def make_mesh(spec: str | tuple[int, ...] = "1,-1,1", devices=None) -> Mesh:
    """A mesh with Auto axes, so that sharding constraints propagate (jax 0.10 defaults to Explicit)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = parse_mesh_shape(spec, len(devices))
    if devices == list(jax.devices()):
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
