"""Our global-norm clipping is optax's, computed with a multiply instead of a division."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from clarify_jax.train.config import OptimizerConfig, Stage
from clarify_jax.train.optimizer import clip_by_global_norm, decay_mask, make_optimizer

PARAMS = {
    "kernel": jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32),
    "norm": {"scale": jnp.ones((5,), jnp.float32)},
}


def grads(norm: float):
    """Gradients of global norm `norm` (a float32 rounding of it)."""
    g = jax.tree.map(
        lambda p: jnp.asarray(np.random.default_rng(1).normal(size=p.shape), jnp.float32), PARAMS
    )
    return jax.tree.map(lambda t: t * (norm / optax.global_norm(g)), g)


def clipped(transform, g):
    return transform.update(g, transform.init(PARAMS), PARAMS)[0]


def test_gradients_under_the_limit_pass_bit_identical():
    g = grads(0.5)
    ours, theirs = clipped(clip_by_global_norm(1.0), g), clipped(optax.clip_by_global_norm(1.0), g)
    for a, b, c in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), jax.tree.leaves(g)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_gradients_over_the_limit_are_scaled_to_it_as_optax_scales_them():
    g = grads(7.0)
    ours, theirs = clipped(clip_by_global_norm(2.0), g), clipped(optax.clip_by_global_norm(2.0), g)
    assert abs(float(optax.global_norm(ours)) - 2.0) < 1e-6
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=3e-7, atol=0)


def test_non_finite_norms_propagate_as_in_optax():
    for bad in (np.nan, np.inf):
        g = jax.tree.map(lambda t: t.at[0].set(bad), grads(3.0))
        ours, theirs = clipped(clip_by_global_norm(1.0), g), clipped(optax.clip_by_global_norm(1.0), g)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_array_equal(np.where(np.isnan(a), 0, a), np.where(np.isnan(b), 0, b))


def test_optimizer_state_has_optax_chains_structure():
    """Checkpoints written with optax's clipping restore with ours, and the other way round."""
    stage, config = Stage(steps=10, learning_rate=1e-3), OptimizerConfig(weight_decay=0.1, clip_norm=1.0)
    ours, schedule = make_optimizer([stage], config)
    theirs = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.1, mask=decay_mask)
    )
    assert jax.tree.structure(ours.init(PARAMS)) == jax.tree.structure(theirs.init(PARAMS))
