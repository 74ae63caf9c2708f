"""The joint loss: a weighted sum over token kinds of the mean cross-entropy of that kind.

loss = sum_kind weight_kind * mean_{targets of that kind} CE. Each kind is averaged on its own, so
the weights set the balance between asking (clarify) and coding (code) whatever their token counts.
A third kind, `decision`, overlaps them: the first token of each answer, where the model chooses
between asking and coding; it is one token among the hundreds of its answer, and its own weight
lets training put the choice first.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.train.head_loss import head_cross_entropy

LOSS_KINDS = ("clarify", "code", "decision")


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cross-entropy, correct) per position, [B, T]; logsumexp minus the target's logit, so no
    [B, T, V] log-softmax is kept for the backward pass."""
    logits = logits.astype(jnp.float32)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    cross_entropy = jax.nn.logsumexp(logits, axis=-1) - target_logit
    correct = jnp.argmax(logits, axis=-1) == targets
    return cross_entropy, correct


def batch_kinds(batch: dict[str, jax.Array]) -> tuple[str, ...]:
    """The loss kinds whose masks the batch carries (the pipeline's always carry all three)."""
    return tuple(kind for kind in LOSS_KINDS if f"{kind}_mask" in batch)


def kind_counts(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {kind: batch[f"{kind}_mask"].astype(jnp.float32).sum() for kind in batch_kinds(batch)}


def joint_loss(
    logits: jax.Array,
    batch: dict[str, jax.Array],
    weights: dict[str, float],
    counts: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The scalar loss and per-kind metrics (loss, token count, accuracy) for a packed batch with
    `targets`, `clarify_mask`, `code_mask` and optionally `decision_mask` (as the input pipeline
    makes them).

    `counts` (tokens per kind) default to this batch's. For a micro-batch of gradient
    accumulation pass the whole batch's counts: the micro-batches' losses and metrics then add up
    to exactly those of the whole batch."""
    counts = kind_counts(batch) if counts is None else counts
    metrics = _kind_metrics(*token_cross_entropy(logits, batch["targets"]), batch, counts)
    total = jnp.float32(0.0)
    for kind in batch_kinds(batch):
        total = total + weights.get(kind, 0.0) * metrics[f"loss/{kind}"]
    metrics["loss"] = total
    return total, metrics


def joint_loss_from_hidden(
    hidden: jax.Array,
    head: jax.Array,
    batch: dict[str, jax.Array],
    weights: dict[str, float],
    counts: dict[str, jax.Array] | None = None,
    capacities: tuple[int, ...] = (),
    head_grad: bool = True,
    sharding: LogicalSharding | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`joint_loss` from the last hidden states [B, T, D] and the head [D, V], with the head and
    the cross-entropy computed only where a kind's mask is set (see head_loss.py): the same loss,
    metrics and gradients, without logits for the prompt positions. `capacities`: the gather sizes
    (loss positions per row) it chooses from at each step; none: every position."""
    counts = kind_counts(batch) if counts is None else counts
    kinds = batch_kinds(batch)
    position_weight = sum(
        weights.get(kind, 0.0) * batch[f"{kind}_mask"].astype(jnp.float32) / jnp.maximum(counts[kind], 1.0)
        for kind in kinds
    )
    select = functools.reduce(jnp.logical_or, (batch[f"{kind}_mask"] > 0 for kind in kinds))
    loss, cross_entropy, correct = head_cross_entropy(
        hidden, head, batch["targets"], position_weight, select, capacities, head_grad, sharding
    )
    metrics = _kind_metrics(cross_entropy, correct, batch, counts)
    metrics["loss"] = loss
    return loss, metrics


def _kind_metrics(cross_entropy, correct, batch, counts) -> dict[str, jax.Array]:
    metrics = {}
    for kind in batch_kinds(batch):
        mask = batch[f"{kind}_mask"].astype(jnp.float32)
        denominator = jnp.maximum(counts[kind], 1.0)  # a batch without this kind contributes nothing
        metrics[f"loss/{kind}"] = (cross_entropy * mask).sum() / denominator
        metrics[f"tokens/{kind}"] = mask.sum()
        metrics[f"accuracy/{kind}"] = (correct * mask).sum() / denominator
    return metrics
