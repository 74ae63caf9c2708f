"""Logical axis names -> mesh axes. Every param dimension and key activation carries a name."""

from __future__ import annotations

import dataclasses

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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
)


@dataclasses.dataclass(frozen=True)
class LogicalSharding:
    """A mesh and the rules that map logical axis names onto it. Hashable: a static jit argument."""

    mesh: Mesh
    rules: tuple[tuple[str, str | tuple[str, ...] | None], ...] = DEFAULT_RULES

    def spec(self, logical_axes: tuple[str | None, ...]) -> PartitionSpec:
        table = dict(self.rules)
        used: set[str] = set()
        out = []
        for name in logical_axes:
            axes = table.get(name) if name is not None else None
            axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
            # A mesh axis may shard only one dimension of an array; size-1 axes are dropped so
            # that specs stay short.
            axes = tuple(a for a in axes if a not in used and self.mesh.shape[a] > 1)
            used.update(axes)
            out.append(axes[0] if len(axes) == 1 else (axes or None))
        return PartitionSpec(*out)

    def named(self, logical_axes: tuple[str | None, ...]) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(logical_axes))

    def constrain(self, x: jax.Array, logical_axes: tuple[str | None, ...]) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, self.named(logical_axes))

    def tree(self, logical_tree):
        """NamedShardings for a pytree of logical PartitionSpecs (as from `model.param_axes`)."""
        return jax.tree.map(lambda axes: self.named(tuple(axes)), logical_tree,
                            is_leaf=lambda x: isinstance(x, PartitionSpec))


def maybe_constrain(sharding: LogicalSharding | None, x: jax.Array, logical_axes):
    return x if sharding is None else sharding.constrain(x, logical_axes)
