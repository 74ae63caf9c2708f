"""The joint loss: per-kind means against numpy, and weights that really cut a kind out."""

import jax
import jax.numpy as jnp
import numpy as np

from clarify_jax import model
from clarify_jax.train.loss import joint_loss
from tests.support.model_configs import TINY_LLAMA

RNG = np.random.default_rng(11)


def _batch(b=2, t=12, v=64):
    kinds = RNG.integers(0, 3, (b, t))
    return {
        "targets": jnp.asarray(RNG.integers(0, v, (b, t)), jnp.int32),
        "clarify_mask": jnp.asarray(kinds == 1, jnp.float32),
        "code_mask": jnp.asarray(kinds == 2, jnp.float32),
    }


def test_per_kind_means_match_numpy():
    logits = RNG.standard_normal((2, 12, 64)).astype(np.float32)
    batch = _batch()
    loss, metrics = joint_loss(jnp.asarray(logits), batch, {"clarify": 0.3, "code": 1.0})
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, np.asarray(batch["targets"])[..., None], -1)[..., 0]
    expected = {}
    for kind in ("clarify", "code"):
        mask = np.asarray(batch[f"{kind}_mask"])
        expected[kind] = (ce * mask).sum() / mask.sum()
        assert np.isclose(float(metrics[f"loss/{kind}"]), expected[kind], rtol=1e-5)
        assert float(metrics[f"tokens/{kind}"]) == mask.sum()
        correct = (logits.argmax(-1) == np.asarray(batch["targets"])) * mask
        assert np.isclose(float(metrics[f"accuracy/{kind}"]), correct.sum() / mask.sum())
    assert np.isclose(float(loss), 0.3 * expected["clarify"] + expected["code"], rtol=1e-5)


def test_zero_clarify_weight_gives_exactly_zero_gradient_from_clarify_tokens():
    cfg = TINY_LLAMA
    params = model.init_params(cfg, jax.random.key(0))
    tokens = jnp.asarray(RNG.integers(0, 64, (2, 12)), jnp.int32)
    batch = _batch()
    without_clarify = {**batch, "clarify_mask": jnp.zeros_like(batch["clarify_mask"])}

    def grads(b, weights):
        return jax.grad(lambda p: joint_loss(model.forward(cfg, p, tokens), b, weights)[0])(params)

    weights = {"clarify": 0.0, "code": 1.0}
    for a, b in zip(jax.tree.leaves(grads(batch, weights)), jax.tree.leaves(grads(without_clarify, weights))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # ...while a non-zero weight does move them.
    with_clarify = grads(batch, {"clarify": 1.0, "code": 1.0})
    assert not np.array_equal(
        np.asarray(with_clarify["lm_head"]["kernel"]),
        np.asarray(grads(without_clarify, weights)["lm_head"]["kernel"]),
    )


def test_a_batch_without_a_kind_contributes_nothing():
    logits = jnp.asarray(RNG.standard_normal((1, 4, 8)), jnp.float32)
    batch = {
        "targets": jnp.zeros((1, 4), jnp.int32),
        "clarify_mask": jnp.zeros((1, 4)),
        "code_mask": jnp.ones((1, 4)),
    }
    loss, metrics = joint_loss(logits, batch, {"clarify": 5.0, "code": 1.0})
    assert float(metrics["loss/clarify"]) == 0.0 and float(metrics["tokens/clarify"]) == 0.0
    assert np.isclose(float(loss), float(metrics["loss/code"]))


def test_decision_tokens_add_their_own_weighted_mean():
    """The decision kind overlaps the answer kinds: its mean is added on top, with its own weight."""
    logits = RNG.standard_normal((2, 12, 64)).astype(np.float32)
    batch = _batch()
    decision = np.zeros((2, 12), np.float32)
    decision[0, 3] = decision[1, 7] = 1.0
    with_decision = {**batch, "decision_mask": jnp.asarray(decision)}
    weights = {"clarify": 1.0, "code": 1.0, "decision": 2.5}
    loss, metrics = joint_loss(jnp.asarray(logits), with_decision, weights)
    base, _ = joint_loss(jnp.asarray(logits), batch, weights)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, np.asarray(batch["targets"])[..., None], -1)[..., 0]
    expected = (ce[0, 3] + ce[1, 7]) / 2
    assert np.isclose(float(metrics["loss/decision"]), expected, rtol=1e-5)
    assert float(metrics["tokens/decision"]) == 2.0
    assert np.isclose(float(loss), float(base) + 2.5 * expected, rtol=1e-5)
    # Weight 0 (the default) logs the decision but leaves the loss as it was.
    unweighted, _ = joint_loss(jnp.asarray(logits), with_decision, {"clarify": 1.0, "code": 1.0})
    assert float(unweighted) == float(base)
