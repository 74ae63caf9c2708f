"""The decoder's key/value cache: one typed pytree that owns its layout.

Code outside this module never indexes the buffers' axes: it asks the cache to write a layer's new
keys and values, to read a layer back, to record the positions of new tokens, to repeat its rows
or to lay itself out over a mesh.
"""

from __future__ import annotations

from typing import ClassVar

import flax.struct
import jax
import jax.numpy as jnp

from clarify_jax.model.config import ModelConfig
from clarify_jax.parallel.sharding import LogicalSharding

EMPTY_SLOT = -1  # the position recorded for a slot that holds no token


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer, in one buffer each, plus where each slot's token sits.

    k, v: [layers, batch, kv_heads, slots, head_dim]. Heads come before slots so that attention
    reads each head's keys contiguously, without a transpose per decode step. After `unstack`,
    k and v are tuples of per-layer buffers [batch, kv_heads, slots, head_dim] instead: a layer
    run with a static index then reads its own buffer in place (XLA:CPU copies a slice of one
    stacked buffer at every read), which decoding over per-layer weights uses.
    pos: [batch, slots], the position of the token in each slot (EMPTY_SLOT when none).
    index: the next slot to write, shared by all rows (rows keep their own positions, so prompts
    of different lengths decode together).
    """

    k: jax.Array
    v: jax.Array
    pos: jax.Array
    index: jax.Array

    # Logical axes of each field, for laying the cache out over a mesh.
    AXES: ClassVar[dict[str, tuple[str, ...]]] = {
        "k": ("layers", "batch", "kv_heads", "length", "head_dim"),
        "v": ("layers", "batch", "kv_heads", "length", "head_dim"),
        "pos": ("batch", "length"),
        "index": (),
    }

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, slots: int, dtype: str | None = None) -> KVCache:
        """A cache of `slots` empty slots per row, in `dtype` (default: the model's compute dtype)."""
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, slots, cfg.head_dim)
        dtype = jnp.dtype(dtype or cfg.dtype)
        return cls(
            k=jnp.zeros(shape, dtype),
            v=jnp.zeros(shape, dtype),
            pos=jnp.full((batch, slots), EMPTY_SLOT, jnp.int32),
            index=jnp.int32(0),
        )

    @property
    def slots(self) -> int:
        return self.pos.shape[1]

    def record_positions(self, positions: jax.Array, filled: jax.Array) -> KVCache:
        """The positions [B, T] of T new tokens, stored from slot `index` on; slots where `filled`
        is False (padding) stay empty. The keys and values are written layer by layer."""
        new = jnp.where(filled, positions, EMPTY_SLOT).astype(jnp.int32)
        return self.replace(pos=jax.lax.dynamic_update_slice(self.pos, new, (0, self.index)))

    def occupied(self) -> jax.Array:
        """[B, slots]: 1 where a slot holds a token."""
        return (self.pos != EMPTY_SLOT).astype(jnp.int32)

    def advance(self, tokens: int) -> KVCache:
        return self.replace(index=self.index + tokens)

    @property
    def unstacked(self) -> bool:
        return isinstance(self.k, tuple)

    def unstack(self) -> KVCache:
        """The same cache with one buffer per layer (a copy); see the class docstring."""
        if self.unstacked:
            return self
        return self.replace(k=tuple(self.k), v=tuple(self.v))

    def write_layer(self, layer: jax.Array | int, keys: jax.Array, values: jax.Array) -> KVCache:
        """This layer's new keys and values [B, T, K, H], at slot `index`. Inside a scan or loop
        whose carry holds the cache, XLA updates the buffers in place. An unstacked cache needs a
        static (int) layer."""

        def write(buffer, new):
            new = new.astype(buffer.dtype).transpose(0, 2, 1, 3)  # [B, K, T, H]
            if self.unstacked:
                return jax.lax.dynamic_update_slice(buffer, new, (0, 0, self.index, 0))
            return jax.lax.dynamic_update_slice(buffer, new[None], (layer, 0, 0, self.index, 0))

        if self.unstacked:
            k, v = list(self.k), list(self.v)
            k[layer], v[layer] = write(k[layer], keys), write(v[layer], values)
            return self.replace(k=tuple(k), v=tuple(v))
        return self.replace(k=write(self.k, keys), v=write(self.v, values))

    def read_layer(self, layer: jax.Array | int, dtype) -> tuple[jax.Array, jax.Array]:
        """This layer's keys and values over all slots, [B, K, S, H] each (heads first)."""
        if self.unstacked:
            return self.k[layer].astype(dtype), self.v[layer].astype(dtype)
        return tuple(
            jax.lax.dynamic_index_in_dim(buffer, layer, 0, keepdims=False).astype(dtype)
            for buffer in (self.k, self.v)
        )

    def with_room(self, slots: int) -> KVCache:
        """This cache with `slots` more empty slots after its last (a copy). A prefill into a cache
        only as wide as its prompts attends over their slots alone; the room for new tokens comes
        after."""

        def pad(x, axes):
            fill = EMPTY_SLOT if jnp.issubdtype(x.dtype, jnp.integer) else 0
            return jnp.pad(x, [(0, slots if a == "length" else 0) for a in axes], constant_values=fill)

        return self._map(pad, "length")

    def repeat_rows(self, times: int) -> KVCache:
        """Every row `times` times in a row (row b becomes rows b * times ... b * times + times - 1):
        one prefill shared by several samples of the same prompt."""
        return self._map(lambda x, axes: jnp.repeat(x, times, axis=axes.index("batch")), "batch")

    def constrain(self, sharding: LogicalSharding | None) -> KVCache:
        """The cache laid out over the mesh by its logical axes (unchanged without a mesh)."""
        if sharding is None:
            return self
        return self._map(sharding.constrain)

    def _map(self, fn, having: str | None = None) -> KVCache:
        """fn(buffer, its logical axes) over the fields (those with axis `having`), per layer
        when unstacked."""
        fields = {}
        for name, axes in self.AXES.items():
            if having is not None and having not in axes:
                continue
            value = getattr(self, name)
            if isinstance(value, tuple):
                fields[name] = tuple(fn(x, axes[1:]) for x in value)
            else:
                fields[name] = fn(value, axes)
        return self.replace(**fields)
