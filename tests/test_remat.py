"""Remat policies change what is stored for the backward pass, never the numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clarify_jax import model
from tests.support.model_configs import TINY_LLAMA

CFG = TINY_LLAMA
TOKENS = jnp.asarray(np.random.default_rng(7).integers(0, CFG.vocab_size, (2, 10)), jnp.int32)


def loss_and_grads(cfg, params):
    def loss(p):
        logits = model.forward(cfg, p, TOKENS[:, :-1])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), TOKENS[:, 1:, None], -1))

    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_policy_gives_the_same_loss_and_gradients(policy):
    params = model.init_params(CFG, jax.random.key(0))
    remat_cfg = CFG.replace(remat=policy)
    assert "remat" in str(jax.make_jaxpr(lambda p: model.forward(remat_cfg, p, TOKENS))(params))
    loss, grads = loss_and_grads(CFG, params)
    remat_loss, remat_grads = loss_and_grads(remat_cfg, params)
    assert abs(float(loss) - float(remat_loss)) <= 1e-6
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(remat_grads)):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-6
    assert float(jnp.abs(grads["layers"]["mlp"]["up_proj"]["kernel"]).max()) > 0
