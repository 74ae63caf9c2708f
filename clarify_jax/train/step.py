"""The jitted, sharded train and eval steps over a state of (step, trainable params, optimizer state).

Full fine-tuning trains every param. With LoRA the trainable tree holds only the adapters and the
base params travel as a separate, never-donated argument (`frozen`), so gradients, optimizer
state and checkpoints cover the adapters alone. Shardings of everything come from the logical
axis rules; the state is donated, so each step updates it in place.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.lora import combine, split_lora
from clarify_jax.model.transformer import Params, apply_decoder, lm_head_matrix, param_axes, param_shapes
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.train.loss import batch_kinds, joint_loss_from_hidden, kind_counts, token_cross_entropy

State = dict[str, Any]  # {"step": int32 [], "params": trainable params, "opt_state": optax state}
BATCH_AXES = ("batch", "length")


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Compiled steps for one model, mesh and optimizer. Build once, call every step."""

    cfg: ModelConfig
    sharding: LogicalSharding
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    grad_accum: int = 1
    seed: int = 0
    # The gather sizes of the train step's LM head, as shares of a row (see head_loss.py): each
    # step computes logits for the smallest that holds its fullest row's loss positions. In the
    # reproduction's packed batches a row holds 26% answer tokens on average, a batch's fullest row
    # up to 66% (over 25% in 150 of its 160 batches, over 50% in 9).
    loss_row_shares: tuple[float, ...] = (0.25, 0.375, 0.5, 0.75)

    @property
    def lora(self) -> bool:
        return self.cfg.lora_rank > 0

    # ---- shapes and shardings ----

    def split(self, params: Params) -> tuple[Params, Params]:
        """(trainable, frozen): (adapters, base) with LoRA, else (all params, {})."""
        return split_lora(params) if self.lora else (params, {})

    @functools.cached_property
    def param_shardings(self) -> tuple[Params, Params]:
        """(trainable, frozen) NamedShardings."""
        return self.split(self.sharding.tree(param_axes(self.cfg), param_shapes(self.cfg)))

    def abstract_state(self) -> State:
        """ShapeDtypeStructs with shardings: the restore target of a checkpoint."""
        trainable_shapes, _ = self.split(param_shapes(self.cfg))
        shapes = {
            "step": jax.ShapeDtypeStruct((), jnp.int32),
            "params": trainable_shapes,
            "opt_state": jax.eval_shape(self.optimizer.init, trainable_shapes),
        }
        return jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.state_shardings
        )

    @functools.cached_property
    def state_shardings(self) -> State:
        trainable, _ = self.param_shardings
        replicated = NamedSharding(self.sharding.mesh, PartitionSpec())
        opt_shapes = jax.eval_shape(self.optimizer.init, self.split(param_shapes(self.cfg))[0])
        # Moments shard like their params; counters and other scalars are replicated.
        opt = optax.tree_map_params(
            self.optimizer, lambda _, s: s, opt_shapes, trainable, transform_non_params=lambda _: replicated
        )
        return {"step": replicated, "params": trainable, "opt_state": opt}

    def batch_sharding(self) -> NamedSharding:
        return self.sharding.named(BATCH_AXES)

    # ---- steps ----

    def init_state(self, trainable: Params) -> State:
        shardings = self.state_shardings

        def init(params):
            return {"step": jnp.int32(0), "params": params, "opt_state": self.optimizer.init(params)}

        return jax.jit(init, out_shardings=shardings)(trainable)

    @functools.cached_property
    def train_step(self):
        """(state, frozen, batch, loss_weights) -> (new state, metrics); `state` is donated."""
        return jax.jit(
            self._train_step_body,
            donate_argnums=0,
            in_shardings=(self.state_shardings, self.param_shardings[1], self.batch_sharding(), None),
            out_shardings=(self.state_shardings, None),
        )

    @functools.cached_property
    def eval_step(self):
        """(trainable, frozen, batch) -> per-kind sums (cross-entropy, correct, tokens)."""
        return jax.jit(self._eval_step_body)

    def _params(self, trainable, frozen) -> Params:
        return combine(trainable, frozen) if self.lora else trainable

    def _apply(self, params, batch, dropout_rng=None, hidden_only=False):
        return apply_decoder(
            self.cfg,
            params,
            batch["tokens"],
            batch["positions"],
            batch["segment_ids"],
            self.sharding,
            dropout_rng=dropout_rng,
            hidden_only=hidden_only,
        )

    def loss(self, trainable, frozen, batch, loss_weights, counts=None, dropout_rng=None):
        """(loss, metrics) that the train step differentiates with respect to `trainable`: the joint
        loss, with the LM head computed only at the loss positions (see head_loss.py)."""
        params = self._params(trainable, frozen)
        hidden = self._apply(params, batch, dropout_rng, hidden_only=True)
        return joint_loss_from_hidden(
            hidden,
            lm_head_matrix(self.cfg, params),
            batch,
            loss_weights,
            counts,
            tuple(round(share * hidden.shape[1]) for share in self.loss_row_shares),
            head_grad=not self.lora,  # LoRA freezes the head
            sharding=self.sharding,
        )

    def _train_step_body(
        self, state: State, frozen: Params, batch: dict[str, jax.Array], loss_weights: dict[str, jax.Array]
    ):
        counts = kind_counts(batch)  # over the whole batch, so micro-batches add up exactly
        step_rng = jax.random.fold_in(jax.random.key(self.seed), state["step"])

        def loss_fn(trainable, micro_batch, rng):
            return self.loss(trainable, frozen, micro_batch, loss_weights, counts, rng)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if self.grad_accum == 1:
            (_, metrics), grads = grad_fn(state["params"], batch, step_rng)
        else:
            grads, metrics = self._accumulate(grad_fn, state["params"], batch, step_rng)
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(
            metrics, grad_norm=optax.global_norm(grads), learning_rate=self.schedule(state["step"])
        )
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    def _accumulate(self, grad_fn, params, batch, step_rng):
        """Sums gradients and metrics over `grad_accum` micro-batches with a scan. Micro-batch i
        takes rows i, i + A, i + 2A, ...: each device's rows split evenly, with no data movement."""
        accum = self.grad_accum
        micro = jax.tree.map(
            lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch
        )

        def body(carry, xs):
            grads_sum, metrics_sum = carry
            micro_batch, index = xs
            micro_batch = {k: self.sharding.constrain(v, BATCH_AXES) for k, v in micro_batch.items()}
            (_, metrics), grads = grad_fn(params, micro_batch, jax.random.fold_in(step_rng, index))
            grads = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_sum, grads)
            return (grads, jax.tree.map(jnp.add, metrics_sum, metrics)), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        first = jax.tree.map(lambda x: x[0], micro)
        metric_shapes = jax.eval_shape(lambda: grad_fn(params, first, step_rng)[0][1])
        metric_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
        (grads, metrics), _ = jax.lax.scan(body, (zeros, metric_zeros), (micro, jnp.arange(accum)))
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        return grads, metrics

    def _eval_step_body(self, trainable, frozen, batch):
        cross_entropy, correct = token_cross_entropy(
            self._apply(self._params(trainable, frozen), batch), batch["targets"]
        )
        sums = {}
        for kind in batch_kinds(batch):
            mask = batch[f"{kind}_mask"].astype(jnp.float32)
            sums[f"cross_entropy/{kind}"] = (cross_entropy * mask).sum()
            sums[f"correct/{kind}"] = (correct * mask).sum()
            sums[f"tokens/{kind}"] = mask.sum()
        return sums


def loss_weights(clarify: float, code: float, decision: float = 0.0) -> dict[str, jax.Array]:
    """Traced (not static) weights, so changing them between stages does not recompile."""
    return {"clarify": jnp.float32(clarify), "code": jnp.float32(code), "decision": jnp.float32(decision)}
