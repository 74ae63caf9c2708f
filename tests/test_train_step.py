"""The jitted train step: sharding and accumulation change nothing, loss weights act exactly,
LoRA leaves the base untouched."""

import jax
import numpy as np
import pytest

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.lora import combine
from clarify_jax.model.transformer import init_params
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.train.config import OptimizerConfig, Stage
from clarify_jax.train.optimizer import make_optimizer
from clarify_jax.train.step import Trainer, loss_weights

CFG = ModelConfig(
    "llama",
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    attention_bias=False,
)
BATCH, LENGTH = 8, 32


def packed_batch(seed: int = 0) -> dict[str, np.ndarray]:
    """Two packed sequences per row, with clarify and code targets scattered over them."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CFG.vocab_size, (BATCH, LENGTH)).astype(np.int32)
    split = LENGTH // 2 + 3
    segment_ids = np.where(np.arange(LENGTH) < split, 1, 2).astype(np.int32)[None].repeat(BATCH, 0)
    segment_ids[:, -2:] = 0  # padding at the end of each row
    positions = np.where(np.arange(LENGTH) < split, np.arange(LENGTH), np.arange(LENGTH) - split)
    kinds = rng.choice(3, (BATCH, LENGTH), p=[0.4, 0.3, 0.3])
    has_next = np.zeros((BATCH, LENGTH), bool)
    has_next[:, :-1] = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, :-1] != 0)
    return {
        "tokens": tokens,
        "segment_ids": segment_ids,
        "positions": positions.astype(np.int32)[None].repeat(BATCH, 0),
        "targets": np.where(has_next, np.roll(tokens, -1, 1), 0).astype(np.int32),
        "clarify_mask": ((kinds == 1) & has_next).astype(np.float32),
        "code_mask": ((kinds == 2) & has_next).astype(np.float32),
    }


def make_trainer(cfg=CFG, mesh="1,1,1", grad_accum=1) -> Trainer:
    devices = jax.devices()[:1] if mesh == "1,1,1" else None
    optimizer, schedule = make_optimizer(
        [Stage(steps=10, learning_rate=1e-2, warmup_steps=1)], OptimizerConfig(weight_decay=0.1)
    )
    return Trainer(cfg, LogicalSharding(make_mesh(mesh, devices)), optimizer, schedule, grad_accum, seed=0)


def run_steps(trainer: Trainer, batches, weights=(1.0, 0.5), params=None):
    params = init_params(trainer.cfg, jax.random.key(0)) if params is None else params
    trainable, frozen = trainer.split(params)
    state = trainer.init_state(trainable)
    losses = []
    for batch in batches:
        batch = {k: jax.device_put(v, trainer.batch_sharding()) for k, v in batch.items()}
        state, metrics = trainer.train_step(state, frozen, batch, loss_weights(*weights))
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses, frozen


@pytest.fixture(scope="module")
def single_device():
    return make_trainer()


def test_sharded_accumulated_step_equals_single_device(single_device):
    batches = [packed_batch(0), packed_batch(1), packed_batch(2)]
    reference, reference_losses = run_steps(single_device, batches)[:2]
    sharded, sharded_losses = run_steps(make_trainer(mesh="2,2,2", grad_accum=2), batches)[:2]
    np.testing.assert_allclose(sharded_losses, reference_losses, rtol=1e-5)
    # Adam divides by sqrt(v): for the few weights with near-zero gradients, reduction-order
    # noise of 1e-7 in the gradient moves the update by up to ~1e-5 of the 1e-2 step.
    for a, b in zip(jax.tree.leaves(sharded["params"]), jax.tree.leaves(reference["params"])):
        np.testing.assert_allclose(a, b, atol=5e-5)
    assert int(sharded["step"]) == int(reference["step"]) == 3
    # The steps did train: after warmup the loss falls on a repeated batch.
    assert reference_losses[2] != reference_losses[0]


def test_zero_clarify_weight_gives_no_gradient_from_clarify_tokens(single_device):
    batch = packed_batch(0)
    changed = dict(batch)
    rng = np.random.default_rng(5)
    clarify = batch["clarify_mask"] > 0
    changed["targets"] = np.where(
        clarify, rng.integers(0, CFG.vocab_size, clarify.shape), batch["targets"]
    ).astype(np.int32)
    assert (changed["targets"] != batch["targets"]).sum() > 20
    # Step 0 has learning rate 0 (warmup); two steps so the second applies the gradient.
    zero = run_steps(single_device, [batch, batch], weights=(0.0, 1.0))[0]
    zero_changed = run_steps(single_device, [changed, changed], weights=(0.0, 1.0))[0]
    for a, b in zip(jax.tree.leaves(zero["params"]), jax.tree.leaves(zero_changed["params"])):
        np.testing.assert_array_equal(a, b)  # bit for bit: clarify targets have no influence
    weighted = run_steps(single_device, [batch, batch], weights=(1.0, 1.0))[0]
    weighted_changed = run_steps(single_device, [changed, changed], weights=(1.0, 1.0))[0]
    kernel = ("params", "layers", "mlp", "up_proj", "kernel")
    assert not np.array_equal(_get(weighted, kernel), _get(weighted_changed, kernel))


def test_lora_trains_adapters_and_leaves_the_base_bit_identical():
    cfg = CFG.replace(
        lora_rank=4, lora_alpha=8.0, lora_dropout=0.1, lora_targets=("q_proj", "v_proj", "down_proj")
    )
    trainer = make_trainer(cfg)
    params = init_params(cfg, jax.random.key(0))
    before = jax.device_get(params)
    state, losses, frozen = run_steps(trainer, [packed_batch(0)] * 4, params=params)
    adapters = state["params"]
    assert set(adapters["layers"]["self_attn"]) == {"q_proj", "v_proj"}
    assert set(adapters["layers"]["mlp"]) == {"down_proj"}
    assert all(
        set(leaf) == {"lora_a", "lora_b"} for group in adapters["layers"].values() for leaf in group.values()
    )
    # The base never entered the optimizer: its moments exist only for the adapter leaves.
    n_adapter = len(jax.tree.leaves(adapters))
    assert len(jax.tree.leaves(state["opt_state"])) == 2 * n_adapter + 1 + 1  # mu, nu, count(s)
    base_after = combine({}, jax.device_get(frozen))
    for path, leaf in jax.tree_util.tree_flatten_with_path(base_after)[0]:
        np.testing.assert_array_equal(leaf, _get(before, [k.key for k in path]))
    assert float(np.abs(adapters["layers"]["self_attn"]["q_proj"]["lora_b"]).max()) > 0  # b left zero
    assert losses[-1] < losses[0]


def _get(tree, keys):
    for key in keys:
        tree = tree[key]
    return np.asarray(tree)


def _scan_lengths(fn, *args) -> list[int]:
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [eqn.params["length"] for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]


def test_lora_on_the_last_layers_gives_their_gradients_and_no_backward_below():
    """frozen_layers=2 of 3 (`--lora.last-layers 1`): the last layer's adapter gradients equal those
    of the whole model's, the first two get exactly zero, and the backward scan runs over one layer."""
    cfg = CFG.replace(num_layers=3, lora_rank=4, lora_alpha=8.0, remat="dots_no_batch")
    # Nonzero b, so every adapter has a gradient to lose.
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: (
            0.05 * jax.random.normal(jax.random.key(1), leaf.shape) if path[-1].key == "lora_b" else leaf
        ),
        init_params(cfg, jax.random.key(0)),
    )
    batch = {k: jax.numpy.asarray(v) for k, v in packed_batch(0).items()}
    grads, losses, scans = {}, {}, {}
    for frozen in (0, 2):
        trainer = make_trainer(cfg.replace(frozen_layers=frozen))
        trainable, base = trainer.split(params)

        def loss(adapters, trainer=trainer, base=base):
            return trainer.loss(adapters, base, batch, loss_weights(1.0, 0.5))[0]

        losses[frozen], grads[frozen] = jax.jit(jax.value_and_grad(loss))(trainable)
        scans[frozen] = _scan_lengths(jax.grad(loss), trainable)
    np.testing.assert_allclose(losses[2], losses[0], rtol=1e-6)
    for whole, last in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[2])):
        assert float(np.abs(whole[:2]).max()) > 0
        np.testing.assert_array_equal(last[:2], 0.0)
        np.testing.assert_allclose(last[2], whole[2], rtol=1e-4, atol=1e-7)
    # Forward and backward over all 3 layers; with the split, forward over 2 + 1, backward over 1.
    assert scans == {0: [3, 3], 2: [2, 1, 1]}


def test_last_layers_needs_lora_and_fits_the_model(tmp_path):
    import json

    from clarify_jax.train.config import LoraConfig, TrainConfig
    from clarify_jax.train.loop import TrainConfigError, model_config

    (tmp_path / "config.json").write_text(json.dumps(CFG.to_hf_dict()))
    stages = (Stage(steps=1),)
    train = TrainConfig(model=str(tmp_path), out="", stages=stages, lora=LoraConfig(rank=4, last_layers=1))
    assert model_config(train).frozen_layers == 1
    for lora in (LoraConfig(rank=0, last_layers=1), LoraConfig(rank=4, last_layers=3)):
        with pytest.raises(TrainConfigError, match="lora.last_layers"):
            model_config(TrainConfig(model=str(tmp_path), out="", stages=stages, lora=lora))
    with pytest.raises(ValueError, match="frozen_layers must be between 0 and num_layers - 1 = 1, got 2"):
        CFG.replace(frozen_layers=2)
