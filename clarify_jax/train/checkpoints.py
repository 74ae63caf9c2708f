"""Orbax checkpoints of a params pytree, restored onto any mesh through abstract targets."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params, param_axes, param_shapes
from clarify_jax.train.sharding import LogicalSharding


class CheckpointMismatch(ValueError):
    """A checkpoint whose tensors do not have the shapes the config asks for."""


def save_params(directory: str | Path, params: Params) -> Path:
    directory = Path(directory).absolute()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory, params, force=True)
    checkpointer.wait_until_finished()
    return directory


def restore_params(directory: str | Path, cfg: ModelConfig,
                   sharding: LogicalSharding | None = None) -> Params:
    """Params in `cfg.param_dtype`, laid out by `sharding` (default: the first device)."""
    directory = Path(directory).absolute()
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such checkpoint")
    checkpointer = ocp.StandardCheckpointer()
    stored = checkpointer.metadata(directory)
    stored = getattr(stored, "item_metadata", stored)
    stored = getattr(stored, "tree", stored)
    expected = param_shapes(cfg)
    _check_shapes(directory, stored, expected)
    if sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, expected)
    else:
        shardings = sharding.tree(param_axes(cfg), expected)
    dtype = jnp.dtype(cfg.param_dtype)
    target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, dtype, sharding=sh),
                          expected, shardings)
    return checkpointer.restore(directory, target)


def _check_shapes(directory: Path, stored, expected) -> None:
    flat_stored = {jax.tree_util.keystr(k): v for k, v in
                   jax.tree_util.tree_flatten_with_path(stored)[0]}
    for key, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
        name = jax.tree_util.keystr(key)
        if name not in flat_stored:
            raise CheckpointMismatch(f"{directory}: param {name} is missing from the checkpoint")
        shape = tuple(getattr(flat_stored[name], "shape", ()) or ())
        if shape != tuple(leaf.shape):
            raise CheckpointMismatch(f"{directory}: param {name} has shape {list(shape)}, "
                                     f"the config asks for {list(leaf.shape)}")
