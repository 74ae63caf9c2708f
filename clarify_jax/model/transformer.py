"""The decoder: embeddings, `nn.scan`-stacked layers, final norm, LM head; pure functions over params."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.kv_cache import KVCache
from clarify_jax.model.layers import DecoderLayer, RMSNorm, attention_mask, logical_param
from clarify_jax.model.rope import rope_tables
from clarify_jax.parallel.sharding import LogicalSharding, maybe_constrain

Params = dict[str, Any]

REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Decoder(nn.Module):
    cfg: ModelConfig
    sharding: LogicalSharding | None = None
    unstacked: bool = False  # the layers' params are per layer (`unstack_layers`), not stacked
    hidden_only: bool = False  # return the final norm's output [B, T, D] instead of the logits

    @nn.compact
    def __call__(self, tokens, positions, mask, kv_cache: KVCache | None):
        cfg = self.cfg
        embedding = logical_param(
            self,
            "embedding",
            nn.initializers.normal(0.02),
            (cfg.vocab_size, cfg.hidden_size),
            ("vocab", "embed"),
            cfg.param_dtype,
        )
        # Gather from a table whole along `embed`: a gather from an fsdp-sharded table gives
        # embed-sharded rows, which XLA can only turn into batch-sharded ones by replicating.
        table = maybe_constrain(self.sharding, embedding, ("vocab", None))
        x = jnp.take(table, tokens, axis=0).astype(cfg.dtype)
        x = maybe_constrain(self.sharding, x, ("batch", "length", "act_embed"))
        cos, sin = rope_tables(cfg, positions)

        layer = DecoderLayer
        if cfg.remat != "none" and kv_cache is None:  # a cached forward is never differentiated
            layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False)
        if self.unstacked:
            for i in range(cfg.num_layers):
                (x, kv_cache), _ = layer(cfg, self.sharding, name=_layer_name(i))(
                    (x, kv_cache), i, cos, sin, mask
                )
                if i + 1 == frozen_layers(cfg, kv_cache):
                    x = jax.lax.stop_gradient(x)
        else:

            def stack(length: int, name: str):
                return nn.scan(
                    layer,
                    variable_axes={"params": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
                    length=length,
                    metadata_params={nn.PARTITION_NAME: "layers"},
                )(cfg, self.sharding, name=name)

            frozen = frozen_layers(cfg, kv_cache) if not self.is_initializing() else 0
            if frozen:  # a separate scan, so that the backward pass does not run through it
                (x, _), _ = stack(frozen, FROZEN_LAYERS)((x, None), None, cos, sin, mask)
                x = jax.lax.stop_gradient(x)
            # The cache rides in the carry (not as a scanned input and output): each layer writes
            # its new keys and values into the whole stack's buffers in place, instead of the scan
            # slicing, updating and restacking whole per-layer caches at every step.
            layer_ids = None if kv_cache is None else jnp.arange(cfg.num_layers, dtype=jnp.int32)
            (x, kv_cache), _ = stack(cfg.num_layers - frozen, "layers")(
                (x, kv_cache), layer_ids, cos, sin, mask
            )
        x = RMSNorm(cfg.rms_norm_eps, cfg.param_dtype, cfg.dtype, name="norm")(x)
        if self.hidden_only:
            return x, kv_cache
        if cfg.tie_word_embeddings:
            head = embedding.T
        else:
            head = logical_param(
                self,
                "lm_head",
                nn.initializers.normal(0.02),
                (cfg.hidden_size, cfg.vocab_size),
                ("embed", "vocab"),
                cfg.param_dtype,
            )
        b, t, d = x.shape  # "BTD,DV->BTV" as a 2-D matmul (faster on XLA:CPU), f32 accumulation
        logits = jnp.dot(
            x.reshape(b * t, d), head.astype(cfg.dtype), preferred_element_type=jnp.float32
        ).reshape(b, t, -1)
        return maybe_constrain(self.sharding, logits, ("batch", "length", "vocab")), kv_cache


FROZEN_LAYERS = "layers_frozen"  # the module's name for the first `cfg.frozen_layers` layers


def frozen_layers(cfg: ModelConfig, kv_cache: KVCache | None) -> int:
    """How many of the first layers run apart and take no gradient: `cfg.frozen_layers` in a forward
    without a cache (the one training differentiates), none in a cached one."""
    return cfg.frozen_layers if kv_cache is None else 0


# The module nests embedding and lm_head as bare params; rename them to HF's module names so the
# pytree reads embed_tokens/embedding and lm_head/kernel.
def _to_hf_tree(tree: Params) -> Params:
    tree = dict(tree)
    tree["embed_tokens"] = {"embedding": tree.pop("embedding")}
    if "lm_head" in tree:
        tree["lm_head"] = {"kernel": tree.pop("lm_head")}
    return tree


def _from_hf_tree(tree: Params, frozen: int = 0) -> Params:
    """The module's tree; `frozen` > 0 splits a stacked "layers" into the first `frozen` layers
    (under stop_gradient) and the rest, as the Decoder scans them (a copy of the layers' weights)."""
    tree = dict(tree)
    tree["embedding"] = tree.pop("embed_tokens")["embedding"]
    if "lm_head" in tree:
        tree["lm_head"] = tree.pop("lm_head")["kernel"]
    if is_unstacked(tree):
        tree.update({_layer_name(i): layer for i, layer in enumerate(tree.pop("layers"))})
    elif frozen:
        layers = tree["layers"]
        tree[FROZEN_LAYERS] = jax.tree.map(lambda a: jax.lax.stop_gradient(a[:frozen]), layers)
        tree["layers"] = jax.tree.map(lambda a: a[frozen:], layers)
    return tree


def _layer_name(i: int) -> str:
    return f"layers_{i}"


def unstack_layers(params: Params) -> Params:
    """The params with "layers" as a tuple of per-layer trees instead of arrays stacked along a
    leading layer axis; `forward` and `forward_with_cache` take either layout.

    Why: the stacked layout runs the layers as one scan, and on XLA:CPU the scan's dynamic slice of
    each weight is a copy, so a memory-bound decode step reads every weight twice and writes it
    once. Per-layer arrays are read in place, at the cost of compiling every layer separately.
    """
    if is_unstacked(params):
        return params
    layers = params["layers"]
    count = jax.tree.leaves(layers)[0].shape[0]
    return {**params, "layers": tuple(jax.tree.map(lambda a: a[i], layers) for i in range(count))}


def is_unstacked(params: Params) -> bool:
    return isinstance(params["layers"], (tuple, list))


def _dummy_inputs(cfg: ModelConfig):
    tokens = jnp.zeros((1, 1), jnp.int32)
    return tokens, tokens, jnp.ones((1, 1, 1), bool), None


def init_params(cfg: ModelConfig, rng: jax.Array) -> Params:
    """Random params (normal(0.02) kernels, unit norms, zero biases) in `cfg.param_dtype`."""
    return _jitted_init(cfg, rng)


def _init_params(cfg: ModelConfig, rng: jax.Array) -> Params:
    variables = Decoder(cfg).init(rng, *_dummy_inputs(cfg))
    return _to_hf_tree(nn.meta.unbox(variables["params"]))


# Jitted: run eagerly, flax's init dispatches every op of the scanned layers one by one (seconds).
_jitted_init = jax.jit(_init_params, static_argnums=0)


def param_shapes(cfg: ModelConfig) -> Params:
    """ShapeDtypeStructs of the params, without allocating them (works for a 7B config on a laptop)."""
    return jax.tree.map(lambda x: x, _param_shapes(cfg))  # a fresh tree: callers may edit it


def param_axes(cfg: ModelConfig) -> Params:
    """The logical axis names of every param dimension, as PartitionSpecs of names."""
    return jax.tree.map(lambda x: x, _param_axes(cfg), is_leaf=lambda x: isinstance(x, PartitionSpec))


# Tracing the scanned init takes about a second; the train step asks for these repeatedly.
@functools.lru_cache(maxsize=16)
def _param_shapes(cfg: ModelConfig) -> Params:
    return jax.eval_shape(functools.partial(_init_params, cfg), jax.random.key(0))


@functools.lru_cache(maxsize=16)
def _param_axes(cfg: ModelConfig) -> Params:
    boxed = jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0), *_dummy_inputs(cfg)))
    return _to_hf_tree(nn.get_partition_spec(boxed)["params"])


def count_params(params_or_shapes: Params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params_or_shapes))


def _default_layout(tokens, positions, segment_ids):
    b, t = tokens.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
    return positions.astype(jnp.int32), segment_ids.astype(jnp.int32)


def apply_decoder(
    cfg: ModelConfig,
    params: Params,
    tokens: jax.Array,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    sharding: LogicalSharding | None = None,
    dropout_rng: jax.Array | None = None,
    hidden_only: bool = False,
) -> jax.Array:
    """Logits [B, T, V] (float32) for tokens [B, T]; the traceable body of `forward`.

    positions: [B, T] (default 0..T-1). segment_ids: [B, T]; tokens attend only within their
    segment, and segment 0 marks padding. A packed row holds several sequences, each with its own
    segment id and positions restarting at 0. `dropout_rng` turns on LoRA dropout (training).
    `hidden_only`: return the last hidden states [B, T, D] (after the final norm, in `cfg.dtype`)
    instead; `lm_head_matrix` gives the [D, V] matrix that turns them into logits.
    """
    positions, segment_ids = _default_layout(tokens, positions, segment_ids)
    mask = attention_mask(positions, segment_ids, positions, segment_ids, cfg.sliding_window)
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    out, _ = Decoder(cfg, sharding, is_unstacked(params), hidden_only).apply(
        {"params": _from_hf_tree(params, frozen_layers(cfg, None))}, tokens, positions, mask, None, rngs=rngs
    )
    return out


def lm_head_matrix(cfg: ModelConfig, params: Params) -> jax.Array:
    """The [D, V] matrix of the LM head in `cfg.dtype`: the embedding's transpose when tied."""
    head = params["embed_tokens"]["embedding"].T if cfg.tie_word_embeddings else params["lm_head"]["kernel"]
    return head.astype(cfg.dtype)


@functools.partial(jax.jit, static_argnames=("cfg", "sharding"))
def forward(
    cfg: ModelConfig,
    params: Params,
    tokens: jax.Array,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    sharding: LogicalSharding | None = None,
) -> jax.Array:
    """Jitted `apply_decoder` without dropout: logits [B, T, V] (float32) for tokens [B, T]."""
    return apply_decoder(cfg, params, tokens, positions, segment_ids, sharding)


@functools.partial(jax.jit, static_argnames=("cfg", "sharding"), donate_argnames=("cache",))
def forward_with_cache(
    cfg: ModelConfig,
    params: Params,
    tokens: jax.Array,
    cache: KVCache,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    sharding: LogicalSharding | None = None,
) -> tuple[jax.Array, KVCache]:
    """Logits for tokens [B, T] written into the cache from its slot index on, and the new cache.

    All rows share the slot index; each row has its own positions, so right-padded prompts of
    different lengths decode together (padding, segment 0, is stored as an empty slot).
    """
    if positions is None:
        positions = cache.index + jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    positions, segment_ids = _default_layout(tokens, positions, segment_ids)
    filled = segment_ids != 0
    cache = cache.record_positions(positions, filled)
    mask = attention_mask(
        positions, filled.astype(jnp.int32), cache.pos, cache.occupied(), cfg.sliding_window
    )
    logits, cache = Decoder(cfg, sharding, is_unstacked(params)).apply(
        {"params": _from_hf_tree(params)}, tokens, positions, mask, cache
    )
    return logits, cache.advance(tokens.shape[1])
