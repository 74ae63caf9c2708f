"""LoRA params as a separate pytree: split from the base for training, merged into kernels for export.

The model creates `lora_a` / `lora_b` beside each targeted kernel (see `Projection`). Training
differentiates only the adapter tree and passes the base as a constant argument, so the base is
never updated, is kept out of the optimizer state and stays bit-identical.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params, init_params

LORA_LEAVES = ("lora_a", "lora_b")


def _is_lora(path) -> bool:
    return getattr(path[-1], "key", None) in LORA_LEAVES


def _filter(tree: Params, keep, prefix=()) -> Params:
    """The sub-tree of leaves whose key path satisfies `keep` (empty dicts pruned)."""
    out = {}
    for key, value in tree.items():
        path = prefix + (jax.tree_util.DictKey(key),)
        if isinstance(value, dict):
            sub = _filter(value, keep, path)
            if sub:
                out[key] = sub
        elif keep(path):
            out[key] = value
    return out


def split_lora(params: Params) -> tuple[Params, Params]:
    """(adapters, base) of a params tree that holds both."""
    return _filter(params, _is_lora), _filter(params, lambda p: not _is_lora(p))


def combine(first: Params, second: Params) -> Params:
    """The union of two disjoint nested dicts (e.g. adapters and base)."""
    out = dict(second)
    for key, value in first.items():
        out[key] = combine(value, out.get(key, {})) if isinstance(value, dict) else value
    return out


def init_lora_params(cfg: ModelConfig, rng: jax.Array, shardings=None) -> Params:
    """Fresh adapters for `cfg` (b = 0, so the model starts equal to its base). Only the adapter
    leaves are returned from the jitted init, so XLA never materialises the base weights."""
    if not cfg.lora_rank:
        raise ValueError("init_lora_params needs a config with lora_rank > 0")

    def adapters(key):
        return split_lora(init_params(cfg, key))[0]

    return jax.jit(adapters, out_shardings=shardings)(rng)


def lora_shapes(cfg: ModelConfig) -> Params:
    return jax.eval_shape(functools.partial(init_lora_params, cfg), jax.random.key(0))


def merge_lora(cfg: ModelConfig, params: Params) -> Params:
    """Base params with every adapter folded into its kernel: W + scale * a @ b, in W's dtype.
    The result is a plain model (use it with `cfg.replace(lora_rank=0)`)."""
    adapters, base = split_lora(params)

    def merge(node, adapter_node):
        out = {}
        for key, value in node.items():
            sub = adapter_node.get(key, {})
            if isinstance(value, dict):
                out[key] = merge(value, sub)
            elif key == "kernel" and "lora_a" in adapter_node:
                out[key] = _merged_kernel(
                    value, adapter_node["lora_a"], adapter_node["lora_b"], cfg.lora_scale
                )
            else:
                out[key] = value
        return out

    return merge(base, adapters)


@functools.partial(jax.jit, static_argnames=("scale",))
def _merged_kernel(kernel, a, b, scale: float):
    # Stacked layers: kernel [L, in..., out...], a [L, in..., r], b [L, r, out...].
    layers, rank = a.shape[0], a.shape[-1]
    delta = jnp.einsum(
        "lir,lro->lio",
        a.reshape(layers, -1, rank).astype(jnp.float32),
        b.reshape(layers, rank, -1).astype(jnp.float32),
    )
    merged = kernel.astype(jnp.float32) + scale * delta.reshape(kernel.shape)
    return merged.astype(kernel.dtype)
