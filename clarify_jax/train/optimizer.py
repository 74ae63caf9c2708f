"""AdamW with a learning-rate schedule spanning all stages, and no decay on norms and biases."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from clarify_jax.train.config import OptimizerConfig, Stage


def stage_schedule(stage: Stage, config: OptimizerConfig) -> optax.Schedule:
    """Warmup from 0 to the stage's peak, then decay (or hold) to final_lr_ratio x peak."""
    peak = stage.learning_rate
    warmup = min(stage.warmup_steps, stage.steps)
    decay_steps = max(stage.steps - warmup, 1)
    if config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=config.final_lr_ratio)
    elif config.schedule == "linear":
        decay = optax.linear_schedule(peak, peak * config.final_lr_ratio, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if not warmup:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def learning_rate_schedule(stages: Sequence[Stage], config: OptimizerConfig) -> optax.Schedule:
    """One schedule over the whole run: each stage's own schedule, restarted at its first step.
    A single schedule keeps one compiled train step for all stages."""
    schedules = [stage_schedule(stage, config) for stage in stages]
    boundaries, end = [], 0
    for stage in stages[:-1]:
        end += stage.steps
        boundaries.append(end)
    return optax.join_schedules(schedules, boundaries) if boundaries else schedules[0]


def decay_mask(params) -> dict:
    """True for weights that get weight decay: matrices (kernels, embeddings, adapters), not the
    RMSNorm scales or the q/k/v biases."""

    def decays(path, _):
        return getattr(path[-1], "key", None) not in ("scale", "bias")

    return jax.tree_util.tree_map_with_path(decays, params)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """optax.clip_by_global_norm's clipping as one multiply by min(1, max_norm / norm) per element.
    XLA copies a cheap multiply into each consumer (both moment updates), but not optax's divide:
    that wrote the clipped gradients out and read them back, and SmolLM2-135M's whole AdamW update
    took 0.27-0.35 s against 0.12 s this way (2 CPU cores). The same (empty) state, so checkpoints
    restore either way; bit-identical to optax's when nothing is clipped, within 2 ulps otherwise."""

    def update(updates, state, params=None):
        del params
        factor = jnp.minimum(1.0, max_norm / optax.global_norm(updates))
        return jax.tree.map(lambda t: t * factor.astype(t.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def make_optimizer(
    stages: Sequence[Stage], config: OptimizerConfig
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = learning_rate_schedule(stages, config)
    parts = [] if config.clip_norm is None else [clip_by_global_norm(config.clip_norm)]
    parts.append(
        optax.adamw(
            schedule,
            b1=config.b1,
            b2=config.b2,
            eps=config.eps,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        )
    )
    return optax.chain(*parts), schedule
