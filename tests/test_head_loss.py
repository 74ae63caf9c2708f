"""The train step's LM head over the loss positions only (train/head_loss.py) against the plain path:
logits for every position, `joint_loss`, autodiff. Same loss, metrics and gradients whichever
gather size a batch takes (the whole row when its fullest row overflows them all), and with a
kind whose weight is zero."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clarify_jax import model
from clarify_jax.model.transformer import apply_decoder, lm_head_matrix
from clarify_jax.train.loss import joint_loss, joint_loss_from_hidden
from tests.support.model_configs import TINY_LLAMA

RNG = np.random.default_rng(5)
B, T, V = 3, 16, TINY_LLAMA.vocab_size
TOKENS = jnp.asarray(RNG.integers(0, V, (B, T)), jnp.int32)
SEGMENTS = jnp.asarray(np.where(np.arange(T) < T - 3, 1, 0)[None].repeat(B, 0), jnp.int32)  # padded tail


def _config(tied: bool):
    return TINY_LLAMA.replace(tie_word_embeddings=tied)


def _batch():
    kinds = RNG.integers(0, 3, (B, T))
    kinds[2] = 0  # a row without any loss position
    kinds[:, T - 3 :] = 0  # none on padding
    decision = (kinds > 0) & (RNG.random((B, T)) < 0.2)
    return {
        "targets": jnp.asarray(RNG.integers(0, V, (B, T)), jnp.int32),
        "clarify_mask": jnp.asarray(kinds == 1, jnp.float32),
        "code_mask": jnp.asarray(kinds == 2, jnp.float32),
        "decision_mask": jnp.asarray(decision, jnp.float32),
    }


BATCH = _batch()
LOSS_POSITIONS_PER_ROW = np.asarray((BATCH["clarify_mask"] + BATCH["code_mask"]) > 0).sum(axis=1)


def _plain(cfg, weights):
    def loss(params):
        return joint_loss(apply_decoder(cfg, params, TOKENS, segment_ids=SEGMENTS), BATCH, weights)

    return jax.value_and_grad(loss, has_aux=True)


def _fused(cfg, weights, capacities, head_grad=True):
    def loss(params):
        hidden = apply_decoder(cfg, params, TOKENS, segment_ids=SEGMENTS, hidden_only=True)
        head = lm_head_matrix(cfg, params)
        return joint_loss_from_hidden(
            hidden, head, BATCH, weights, capacities=capacities, head_grad=head_grad
        )

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _assert_same(expected, got):
    (loss_a, metrics_a), grads_a = expected
    (loss_b, metrics_b), grads_b = got
    np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-5)
    assert metrics_a.keys() == metrics_b.keys()
    for key in metrics_a:
        np.testing.assert_allclose(float(metrics_b[key]), float(metrics_a[key]), rtol=1e-5, atol=1e-6)
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(grads_a)[0], jax.tree.leaves(grads_b)
    for (path, a), b in zip(flat_a, flat_b):
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), atol=2e-6, err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(
    "capacities",
    [(), (12,), (4, 12, 14), (4,)],
    ids=["whole-row", "gathered", "smallest-that-fits", "overflow"],
)
def test_loss_metrics_and_gradients_equal_the_logits_path(tied, capacities):
    assert 4 < LOSS_POSITIONS_PER_ROW.max() <= 12 < T  # 4 overflows: the whole row is taken
    cfg = _config(tied)
    params = model.init_params(cfg, jax.random.key(1))
    weights = {"clarify": 0.7, "code": 1.0, "decision": 2.0}
    _assert_same(_plain(cfg, weights)(params), _fused(cfg, weights, capacities)(params))


def test_a_zero_weight_kind_is_still_measured_and_gives_no_gradient():
    cfg = _config(True)
    params = model.init_params(cfg, jax.random.key(2))
    weights = {"clarify": 1.0, "code": 0.0}
    expected, got = _plain(cfg, weights)(params), _fused(cfg, weights, (12,))(params)
    _assert_same(expected, got)
    assert float(got[0][1]["loss/code"]) > 0


def test_without_the_head_gradient_the_rest_is_unchanged():
    """LoRA's setting: the head is frozen, so its gradient is skipped; every other gradient holds."""
    cfg = _config(False)
    params = model.init_params(cfg, jax.random.key(3))
    weights = {"clarify": 1.0, "code": 0.5}
    (_, _), with_head = _fused(cfg, weights, (12,))(params)
    (_, _), without = _fused(cfg, weights, (12,), head_grad=False)(params)
    assert float(jnp.abs(with_head["lm_head"]["kernel"]).max()) > 0
    assert float(jnp.abs(without["lm_head"]["kernel"]).max()) == 0
    for a, b in zip(jax.tree.leaves(with_head["layers"]), jax.tree.leaves(without["layers"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
