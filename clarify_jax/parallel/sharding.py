"""Logical axis names -> mesh axes. Every param dimension and key activation carries a name."""

from __future__ import annotations

import dataclasses

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from clarify_jax.parallel.mesh import make_mesh

# (logical name, mesh axes). Params shard `embed` over fsdp (ZeRO-3 style) and the head / mlp /
# vocab dimensions over tensor; activations shard batch over data and fsdp.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("act_embed", None),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("norm", None),
    ("lora_rank", None),
)


@dataclasses.dataclass(frozen=True)
class LogicalSharding:
    """A mesh and the rules that map logical axis names onto it. Hashable: a static jit argument."""

    mesh: Mesh
    rules: tuple[tuple[str, str | tuple[str, ...] | None], ...] = DEFAULT_RULES

    def spec(
        self, logical_axes: tuple[str | None, ...], shape: tuple[int, ...] | None = None
    ) -> PartitionSpec:
        """Mesh axes per dimension. A mesh axis shards at most one dimension; with `shape`, axes
        that do not divide their dimension are left out (e.g. 4 kv heads on tensor=8 are
        replicated), so any model fits any mesh. A name without a rule is an error: a typo would
        otherwise replicate that dimension silently."""
        table = dict(self.rules)
        unknown = [name for name in logical_axes if name is not None and name not in table]
        if unknown:
            raise ValueError(f"logical axes {unknown} have no sharding rule; known: {sorted(table)}")
        used: set[str] = set()
        out = []
        for dim, name in enumerate(logical_axes):
            axes = table[name] if name is not None else None
            axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
            kept, product = [], 1
            for axis in axes:
                size = self.mesh.shape[axis]
                if axis in used or size == 1:
                    continue
                if shape is not None and shape[dim] % (product * size):
                    continue
                kept.append(axis)
                product *= size
            used.update(kept)
            out.append(kept[0] if len(kept) == 1 else (tuple(kept) or None))
        return PartitionSpec(*out)

    def named(
        self, logical_axes: tuple[str | None, ...], shape: tuple[int, ...] | None = None
    ) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(logical_axes, shape))

    def constrain(self, x: jax.Array, logical_axes: tuple[str | None, ...]) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, self.named(logical_axes, x.shape))

    def tree(self, logical_tree, shapes):
        """NamedShardings for a pytree of logical PartitionSpecs (as from `model.param_axes`) and
        the matching pytree of shapes (arrays or ShapeDtypeStructs)."""
        return jax.tree.map(
            lambda axes, leaf: self.named(tuple(axes), tuple(leaf.shape)),
            logical_tree,
            shapes,
            is_leaf=lambda x: isinstance(x, PartitionSpec),
        )


def maybe_constrain(sharding: LogicalSharding | None, x: jax.Array, logical_axes):
    return x if sharding is None else sharding.constrain(x, logical_axes)


def optional_sharding(mesh: str | None) -> LogicalSharding | None:
    """The LogicalSharding of a --mesh option such as "1,-1,1"; None (the first device) without one."""
    return None if mesh is None else LogicalSharding(make_mesh(mesh))
