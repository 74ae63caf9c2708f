"""A training run's model as the mean of the weights of its last checkpoints (`average_last`).

Late in a run the weights still move with each batch's mix, and with them how often a small model
asks (README, "The mean of the last three checkpoints"); the mean of a few checkpoints' weights is
steadier. Under LoRA the mean is over the merged kernels (W + s a b), not over the factors: a mean
of the factors is not the mean of their products.

The result is written as `RUN/averaged/` (run_dir.py), shaped like a step: `params` (the plain
model) and `meta` (the last step's meta plus the steps averaged).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from clarify_jax.checkpoints.params import save_params
from clarify_jax.checkpoints.run_dir import (
    AVERAGED_DIR,
    AVERAGED_STEPS_KEY,
    CHECKPOINTS_DIR,
    META_ITEM,
    PARAMS_ITEM,
    read_step_meta,
    restore_params_item,
)
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.lora import combine, merge_lora
from clarify_jax.model.transformer import Params
from clarify_jax.util.storage import as_path


def average_params(cfg: ModelConfig, step_dirs: list[Path], trainable_abstract, frozen: Params) -> Params:
    """The mean of the plain models of `step_dirs` (the adapters merged into `frozen` under LoRA),
    in the params' dtype. Accumulated as float32 differences from the first step, so weights that
    no step changed (a frozen base, tied norms) come out bit for bit."""
    first, total = None, None
    for step_dir in step_dirs:
        params = restore_params_item(step_dir, trainable_abstract)
        if cfg.lora_rank:
            params = merge_lora(cfg, combine(params, frozen))
        if first is None:
            first = params
        elif total is None:
            total = _difference(params, first)
        else:
            total = _accumulate(total, params, first)
    return first if total is None else _mean(first, total, len(step_dirs))


def _f32_difference(p, f):
    return p.astype(jnp.float32) - f.astype(jnp.float32)


@jax.jit
def _difference(params, first):
    return jax.tree.map(_f32_difference, params, first)


@jax.jit
def _accumulate(total, params, first):
    return jax.tree.map(lambda t, p, f: t + _f32_difference(p, f), total, params, first)


@functools.partial(jax.jit, static_argnums=2)
def _mean(first, total, count: int):
    return jax.tree.map(lambda f, t: (f.astype(jnp.float32) + t / count).astype(f.dtype), first, total)


def write_average(
    run_dir: str | Path, steps: list[int], cfg: ModelConfig, trainable_abstract, frozen: Params
) -> Path:
    """Averages the run's checkpoints of `steps` into `run_dir/averaged` (replacing an older
    average). Every process calls it; process 0 writes the meta, which marks the item complete."""
    run = as_path(run_dir)
    step_dirs = [run / CHECKPOINTS_DIR / str(step) for step in steps]
    params = average_params(cfg, step_dirs, trainable_abstract, frozen)
    out = run / AVERAGED_DIR
    old_meta = epath.Path(str(out / META_ITEM))
    if jax.process_index() == 0 and old_meta.exists():
        old_meta.rmtree()  # the old average is incomplete from here until the new meta
    _sync("average: old meta removed")
    save_params(out / PARAMS_ITEM, params)
    if jax.process_index() == 0:
        meta: dict[str, Any] = dict(read_step_meta(step_dirs[-1]), **{AVERAGED_STEPS_KEY: list(steps)})
        handler = ocp.JsonCheckpointHandler()
        try:
            (out / META_ITEM).mkdir(parents=True, exist_ok=True)
            handler.save(out / META_ITEM, args=ocp.args.JsonSave(meta))
        finally:
            handler.close()
    _sync("average: written")
    return out


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
