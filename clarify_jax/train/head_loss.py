"""The LM head and the weighted cross-entropy fused, computed only on the positions that carry a loss.

In a supervised dialogue most positions are prompt: in the reproduction's packed batches about a
quarter of the tokens are answer tokens. The plain path computes logits [B, T, V] for every
position, keeps them for the backward pass and differentiates through them; at SmolLM2's shape
(vocabulary 49,152) that head is about a tenth of a LoRA step. Here each row's loss positions are
gathered first, their logits computed, and the gradient with respect to the hidden states (and to
the head, when it is trained) computed in the same pass, since the loss's weight of every position
is known then. Nothing of size [B, T, V] outlives the forward pass. The gather's size is static:
each step takes the smallest of a few `capacities` (loss positions per row) that holds its fullest
row, or the whole row (a `lax.switch`: the answer never depends on the capacities, only the time).
Per row, not per batch, so rows keep their sharding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from clarify_jax.parallel.sharding import LogicalSharding, maybe_constrain


def head_cross_entropy(
    hidden: jax.Array,
    head: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    select: jax.Array,
    capacities: tuple[int, ...] = (),
    head_grad: bool = True,
    sharding: LogicalSharding | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss, cross_entropy, correct): loss = sum(weights * cross_entropy) and per-position
    cross-entropy and argmax hits [B, T] (zero where `select` is False; not differentiable, for
    metrics).

    hidden [B, T, D] (the final norm's output), head [D, V], targets [B, T] int, weights [B, T]
    float (zero off the loss positions), select [B, T] bool: the positions whose cross-entropy is
    wanted (every weighted one, and those of zero-weight kinds still reported). `capacities`: the
    gather sizes (selected positions per row) to choose from; none: every position.
    `head_grad=False` skips the head's gradient (LoRA, where the head is frozen): its cotangent is
    then zero.
    """
    loss, cross_entropy, correct = _fused(
        hidden, head, targets, weights, select, tuple(capacities), head_grad, sharding
    )
    return loss, jax.lax.stop_gradient(cross_entropy), correct


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _fused(hidden, head, targets, weights, select, capacities, head_grad, sharding):
    return _forward(hidden, head, targets, weights, select, capacities, head_grad, sharding)[0]


def _forward(hidden, head, targets, weights, select, capacities, head_grad, sharding):
    t = hidden.shape[1]
    sizes = sorted({c for c in capacities if 0 < c < t}) + [t]
    branches = [
        functools.partial(_rows, hidden, head, targets, weights, select, size, head_grad, sharding)
        for size in sizes
    ]
    if len(branches) == 1:
        out = branches[0]()
    else:
        fullest = select.sum(axis=1).max()
        out = jax.lax.switch(jnp.searchsorted(jnp.asarray(sizes[:-1]), fullest), branches)
    loss, cross_entropy, correct, d_hidden, d_head = out
    return (loss, cross_entropy, correct), (d_hidden, d_head)


def _backward(capacities, head_grad, sharding, residuals, cotangents):
    d_hidden, d_head = residuals
    scale = cotangents[0]  # the cross-entropy output is stop_gradient'ed by the only caller
    return (
        (scale * d_hidden).astype(d_hidden.dtype),
        None if d_head is None else (scale * d_head).astype(d_head.dtype),
        None,
        None,
        None,
    )


_fused.defvjp(_forward, _backward)


def _rows(hidden, head, targets, weights, select, capacity, head_grad, sharding):
    """Loss, cross-entropy, hits, d loss / d hidden and d loss / d head over the first `capacity`
    selected positions of each row (every position when `capacity` is the row length)."""
    b, t, d = hidden.shape
    if capacity >= t:
        x, tgt, w, sel = hidden, targets, weights, select
    else:
        # A stable sort puts each row's selected positions first, in order.
        index = jnp.argsort(~select, axis=1, stable=True)[:, :capacity]
        x = jnp.take_along_axis(hidden, index[..., None], axis=1)
        tgt, w, sel = (jnp.take_along_axis(a, index, axis=1) for a in (targets, weights, select))
    x = maybe_constrain(sharding, x, ("batch", "length", "act_embed"))
    x2d = x.reshape(b * capacity, d)
    logits = jnp.dot(x2d, head, preferred_element_type=jnp.float32).reshape(b, capacity, -1)
    logits = maybe_constrain(sharding, logits, ("batch", "length", "vocab"))
    log_norm = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
    cross_entropy = jnp.where(sel, log_norm - target_logit, 0.0)
    correct = sel & (jnp.argmax(logits, axis=-1) == tgt)
    w = jnp.where(sel, w, 0.0).astype(jnp.float32)
    loss = jnp.sum(w * cross_entropy)
    # d loss / d logits = w * (softmax - one_hot(target)).
    d_logits = jnp.exp(logits - log_norm[..., None]) * w[..., None]
    d_logits = d_logits - jax.nn.one_hot(tgt, logits.shape[-1], dtype=jnp.float32) * w[..., None]
    d_logits = maybe_constrain(sharding, d_logits, ("batch", "length", "vocab")).astype(head.dtype)
    d_logits2d = d_logits.reshape(b * capacity, -1)
    d_x = jnp.dot(d_logits2d, head.T, preferred_element_type=jnp.float32).reshape(b, capacity, d)
    d_head = None
    if head_grad:
        d_head = jnp.dot(x2d.T, d_logits2d, preferred_element_type=jnp.float32).astype(head.dtype)
    if capacity < t:
        rows = jnp.arange(b)[:, None]
        cross_entropy = jnp.zeros((b, t), jnp.float32).at[rows, index].set(cross_entropy)
        correct = jnp.zeros((b, t), bool).at[rows, index].set(correct)
        d_x = jnp.zeros((b, t, d), jnp.float32).at[rows, index].set(d_x)
    return loss, cross_entropy, correct, d_x.astype(hidden.dtype), d_head
