"""Orbax checkpoints of a params pytree, restored onto any mesh through abstract targets."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params, param_axes, param_shapes
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.util.storage import as_path


class CheckpointMismatch(ValueError):
    """A checkpoint whose tensors do not have the shapes the config asks for."""


def save_params(directory: str | Path, params: Params) -> Path:
    directory = as_path(directory)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory, params, force=True)
    checkpointer.wait_until_finished()
    return directory


def stored_metadata(directory: str | Path):
    """The pytree of per-array metadata (shape, dtype) of the params checkpoint in `directory`."""
    stored = ocp.StandardCheckpointHandler().metadata(as_path(directory))
    return getattr(getattr(stored, "item_metadata", stored), "tree", stored)


def read_params(directory: str | Path, target) -> Params:
    """The params checkpoint in `directory` restored into `target` (ShapeDtypeStructs with their
    shardings). Through the item handler rather than a Checkpointer: a training step's `params/`
    is one item of a CheckpointManager step, whose _CHECKPOINT_METADATA sits a level up, and a
    Checkpointer logs a warning on every load that it is missing."""
    handler = ocp.StandardCheckpointHandler()
    try:
        return handler.restore(as_path(directory), args=ocp.args.StandardRestore(target))
    finally:
        handler.close()


def restore_params(
    directory: str | Path, cfg: ModelConfig, sharding: LogicalSharding | None = None
) -> Params:
    """Params in `cfg.param_dtype`, laid out by `sharding` (default: the first device)."""
    directory = as_path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such checkpoint")
    expected = param_shapes(cfg)
    check_checkpoint_shapes(directory, expected)
    if sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, expected)
    else:
        shardings = sharding.tree(param_axes(cfg), expected)
    dtype = jnp.dtype(cfg.param_dtype)
    target = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, dtype, sharding=sh), expected, shardings
    )
    return read_params(directory, target)


def check_checkpoint_shapes(directory: Path, expected) -> None:
    """A clear error, before anything is read, when the orbax checkpoint in `directory` does not
    hold exactly the params of `expected` (a pytree of shapes)."""
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such checkpoint")
    stored = stored_metadata(directory)
    flat_stored = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(stored)[0]}
    names = set()
    for key, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
        name = jax.tree_util.keystr(key)
        names.add(name)
        if name not in flat_stored:
            raise CheckpointMismatch(
                f"{directory}: param {name} is missing from the checkpoint "
                "(made for another model or LoRA setting?)"
            )
        shape = tuple(getattr(flat_stored[name], "shape", ()) or ())
        if shape != tuple(leaf.shape):
            raise CheckpointMismatch(
                f"{directory}: param {name} has shape {list(shape)}, the config asks for {list(leaf.shape)}"
            )
    extra = sorted(set(flat_stored) - names)
    if extra:
        raise CheckpointMismatch(f"{directory}: holds params the config does not have, e.g. {extra[0]}")
