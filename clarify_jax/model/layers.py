"""Decoder building blocks. Param names follow Hugging Face (q_proj, gate_proj, input_layernorm)."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.kv_cache import KVCache
from clarify_jax.model.rope import apply_rope
from clarify_jax.parallel.sharding import LogicalSharding, maybe_constrain

NEG_INF = -1e30  # finite, so a fully masked (padding) query row gives no NaN
CAUSAL_BLOCK = 128  # query block of `causal_attention`; 128 measured best on CPU at T=512


def logical_param(module: nn.Module, name: str, init, shape, axes, dtype):
    """A param whose every dimension carries a logical axis name (see parallel/sharding.py)."""
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(dtype))


class Projection(nn.Module):
    """x[..., in] @ kernel[in..., out...] (+ bias[out...]), `equation` naming the shapes.

    The product runs as one 2-D matmul over flattened leading dims: XLA:CPU ran the 3-D einsum
    form about 20% slower on the MLP shapes.
    """

    equation: str  # e.g. "BTD,DNH->BTNH"; documents the shapes, the kernel shape defines them
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    in_dims: int = 1  # how many leading kernel dims are contracted with x's trailing dims
    bias_shape: tuple[int, ...] | None = None
    bias_axes: tuple[str, ...] | None = None
    param_dtype: str = "float32"
    dtype: str = "float32"
    lora_rank: int = 0  # > 0: add a LoRA adapter (see ModelConfig)
    lora_scale: float = 1.0
    lora_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = logical_param(
            self, "kernel", nn.initializers.normal(0.02), self.shape, self.axes, self.param_dtype
        )
        inner, outer = self.shape[: self.in_dims], self.shape[self.in_dims :]
        lead = x.shape[: x.ndim - self.in_dims]
        x2d = x.reshape(-1, math.prod(inner)).astype(self.dtype)
        y = jnp.dot(x2d, kernel.astype(self.dtype).reshape(math.prod(inner), math.prod(outer)))
        if self.lora_rank:
            y = y + self._lora(x2d, inner, outer)
        y = y.reshape(*lead, *outer)
        if self.bias_shape is not None:
            bias = logical_param(
                self, "bias", nn.initializers.zeros, self.bias_shape, self.bias_axes, self.param_dtype
            )
            y = y + bias.astype(self.dtype)
        return y

    def _lora(self, x2d: jax.Array, inner, outer) -> jax.Array:
        """scale * dropout(x) @ a @ b. `a` starts random and `b` at zero, so a new adapter leaves
        the model unchanged; both are float32 (small, and trained even when the base is bf16).
        Dropout is active only when the caller passes a "dropout" rng (training)."""
        r, in_axes, out_axes = self.lora_rank, self.axes[: self.in_dims], self.axes[self.in_dims :]
        a = logical_param(
            self,
            "lora_a",
            nn.initializers.normal(1.0 / math.sqrt(math.prod(inner))),
            (*inner, r),
            (*in_axes, "lora_rank"),
            "float32",
        )
        b = logical_param(
            self, "lora_b", nn.initializers.zeros, (r, *outer), ("lora_rank", *out_axes), "float32"
        )
        if self.lora_dropout and self.has_rng("dropout"):
            x2d = nn.Dropout(self.lora_dropout, deterministic=False)(x2d)
        # Scaled on the rank side: [rows, r] is tiny, where [rows, out] costs a pass over memory
        # forward and backward (about 3% of a SmolLM2 LoRA step when scaled there).
        low = jnp.dot(x2d, a.astype(self.dtype).reshape(-1, r)) * jnp.asarray(self.lora_scale, self.dtype)
        return jnp.dot(low, b.astype(self.dtype).reshape(r, -1))


class RMSNorm(nn.Module):
    eps: float
    param_dtype: str = "float32"
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = logical_param(
            self, "scale", nn.initializers.ones, (x.shape[-1],), ("norm",), self.param_dtype
        )
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return x32.astype(self.dtype) * scale.astype(self.dtype)


def attention_mask(q_pos, q_seg, k_pos, k_seg, sliding_window: int | None) -> jax.Array:
    """[B, T, S] bool: same segment, key not padding, key not after the query, inside the window."""
    mask = (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] != 0)
    mask &= k_pos[:, None, :] <= q_pos[:, :, None]
    if sliding_window is not None:
        mask &= q_pos[:, :, None] - k_pos[:, None, :] < sliding_window
    return mask


def lora_options(cfg: ModelConfig, module_name: str) -> dict[str, Any]:
    """Projection kwargs that give `module_name` a LoRA adapter when the config targets it."""
    if not cfg.lora_rank or module_name not in cfg.lora_targets:
        return {}
    return dict(lora_rank=cfg.lora_rank, lora_scale=cfg.lora_scale, lora_dropout=cfg.lora_dropout)


def _query_heads_first(q, kv_heads: int):
    """q [B,T,N,H] -> [B,K,G,T,H], the N heads grouped by the K kv heads they share."""
    b, t, n, h = q.shape
    return q.reshape(b, t, kv_heads, n // kv_heads, h).transpose(0, 2, 3, 1, 4)


def _heads_first(q, k, v):
    """q [B,T,N,H] -> [B,K,G,T,H]; k, v [B,S,K,H] -> [B,K,S,H]. Batched matmuls over (B, K, G)
    with contiguous [T, H] x [H, S] operands run markedly faster on XLA:CPU."""
    return _query_heads_first(q, k.shape[2]), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)


def _attend(q, k, v, mask):
    """Heads-first q [B,K,G,T,H], k/v [B,K,S,H], mask [B,T,S] -> [B,K,G,T,H]."""
    scores = jnp.einsum("BKGTH,BKSH->BKGTS", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(mask[:, None, None, :, :], scores / math.sqrt(q.shape[-1]), NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("BKGTS,BKSH->BKGTH", probs, v)


def _attend_one_token(q, k, v, mask):
    """`_attend` for T == 1 (a decode step), with the cache's keys and values as the products'
    big operands in their stored layout: scores as keys [S, H] x queries [H, G] instead of
    queries [G, H] x keys^T [H, S], which XLA:CPU ran about 15% slower over per-layer caches."""
    scores = jnp.einsum("BKSH,BKGH->BKSG", k, q[:, :, :, 0], preferred_element_type=jnp.float32)
    visible = mask[:, 0, None, :, None]  # [B, 1, S, 1]
    scores = jnp.where(visible, scores / math.sqrt(q.shape[-1]), NEG_INF)
    probs = jax.nn.softmax(scores, axis=2).astype(v.dtype)
    return jnp.einsum("BKSG,BKSH->BKGH", probs, v)[:, :, :, None]


def _heads_last(out):
    b, kv_heads, g, t, h = out.shape
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, kv_heads * g, h)


def dot_product_attention(q, k, v, mask) -> jax.Array:
    """q [B,T,N,H], k/v [B,S,K,H], mask [B,T,S] -> [B,T,N,H]; the N heads share K kv heads."""
    return _heads_last(_attend(*_heads_first(q, k, v), mask))


def causal_attention(q, k, v, mask, block: int = CAUSAL_BLOCK) -> jax.Array:
    """`dot_product_attention` for T == S when no key comes after its query in the row (causal,
    also within packed segments), computed per query block against only the keys up to the
    block's end: the upper triangle of scores is never formed, about half the work."""
    t = q.shape[1]
    if t <= block:
        return dot_product_attention(q, k, v, mask)
    q, k, v = _heads_first(q, k, v)
    outs = [
        _attend(
            q[:, :, :, i : i + block],
            k[:, :, : i + block],
            v[:, :, : i + block],
            mask[:, i : i + block, : i + block],
        )
        for i in range(0, t, block)
    ]
    return _heads_last(jnp.concatenate(outs, axis=3))


class Attention(nn.Module):
    cfg: ModelConfig
    sharding: LogicalSharding | None = None

    @nn.compact
    def __call__(self, x, cos, sin, mask, kv_cache: KVCache | None, layer):
        """kv_cache: None (the plain forward: causal attention within x) or the whole stack's cache;
        this layer writes its new keys and values at the cache's slot index and attends over all
        of its slots. Returns (out, kv_cache)."""
        cfg = self.cfg
        d, n, k, h = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        dtypes = dict(param_dtype=cfg.param_dtype, dtype=cfg.dtype)

        def proj(name, heads, head_axis):
            bias = (heads, h) if cfg.attention_bias else None
            return Projection(
                "BTD,DNH->BTNH",
                (d, heads, h),
                ("embed", head_axis, "head_dim"),
                bias_shape=bias,
                bias_axes=(head_axis, "head_dim"),
                name=name,
                **dtypes,
                **lora_options(cfg, name),
            )(x)

        q = apply_rope(proj("q_proj", n, "heads"), cos, sin)
        key = apply_rope(proj("k_proj", k, "kv_heads"), cos, sin)
        value = proj("v_proj", k, "kv_heads")
        q = maybe_constrain(self.sharding, q, ("batch", "length", "heads", "head_dim"))
        if kv_cache is None:
            out = causal_attention(q, key, value, mask)
        else:
            # Write only this chunk's keys and values, then read the layer back, already heads
            # first: the buffers are a scan carry, so XLA updates them in place. (Reading before
            # the write made XLA copy both whole buffers at every step.)
            kv_cache = kv_cache.write_layer(layer, key, value)
            key, value = kv_cache.read_layer(layer, cfg.dtype)
            attend = _attend_one_token if q.shape[1] == 1 else _attend
            out = _heads_last(attend(_query_heads_first(q, k), key, value, mask))
        out = Projection(
            "BTNH,NHD->BTD",
            (n, h, d),
            ("heads", "head_dim", "embed"),
            in_dims=2,
            name="o_proj",
            **dtypes,
            **lora_options(cfg, "o_proj"),
        )(out)
        return out, kv_cache


class MLP(nn.Module):
    cfg: ModelConfig
    sharding: LogicalSharding | None = None

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        dtypes = dict(param_dtype=cfg.param_dtype, dtype=cfg.dtype)
        shape, axes = (cfg.hidden_size, cfg.intermediate_size), ("embed", "mlp")
        gate = Projection(
            "BTD,DF->BTF", shape, axes, name="gate_proj", **dtypes, **lora_options(cfg, "gate_proj")
        )(x)
        up = Projection("BTD,DF->BTF", shape, axes, name="up_proj", **dtypes, **lora_options(cfg, "up_proj"))(
            x
        )
        hidden = maybe_constrain(self.sharding, jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
        return Projection(
            "BTF,FD->BTD",
            shape[::-1],
            axes[::-1],
            name="down_proj",
            **dtypes,
            **lora_options(cfg, "down_proj"),
        )(hidden)


class DecoderLayer(nn.Module):
    """Pre-norm attention and SwiGLU blocks; the signature fits `nn.scan`: the carry is
    (x, kv_cache), the whole stack's KV cache or None, the scanned input the layer index."""

    cfg: ModelConfig
    sharding: LogicalSharding | None = None

    @nn.compact
    def __call__(self, carry, layer, cos, sin, mask):
        cfg = self.cfg
        x, kv_cache = carry
        norm = dict(eps=cfg.rms_norm_eps, param_dtype=cfg.param_dtype, dtype=cfg.dtype)
        attn_out, kv_cache = Attention(cfg, self.sharding, name="self_attn")(
            RMSNorm(name="input_layernorm", **norm)(x), cos, sin, mask, kv_cache, layer
        )
        x = x + attn_out
        x = x + MLP(cfg, self.sharding, name="mlp")(RMSNorm(name="post_attention_layernorm", **norm)(x))
        x = maybe_constrain(self.sharding, x, ("batch", "length", "act_embed"))
        return (x, kv_cache), None
