"""Training checkpoints: one orbax step directory per save with the train state, the data
iterator's position (one JSON per host) and a JSON of run metadata.

    checkpoints/<step>/params      trainable params (the adapters alone under LoRA)
    checkpoints/<step>/opt_state   optimizer state
    checkpoints/<step>/data_iter   grain iterator state of the stage that was running
    checkpoints/<step>/meta        step, stage, model source, LoRA settings, the run config

Saves are asynchronous: the arrays are copied off the devices, then written in the background
while training goes on. The iterator state is captured during the call (orbax runs grain's
synchronous handler before returning), so it matches the saved step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grain
import grain.checkpoint
import jax
import orbax.checkpoint as ocp

from clarify_jax.train.checkpoints import check_checkpoint_shapes, read_params

CHECKPOINTS_DIR = "checkpoints"


class RunCheckpoints:
    def __init__(self, run_dir: str | Path, keep: int = 3, asynchronous: bool = True):
        self.directory = Path(run_dir).absolute() / CHECKPOINTS_DIR
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: dict, iterator: grain.DatasetIterator | None, meta: dict[str, Any]) -> None:
        step = int(jax.device_get(state["step"]))
        items = {"params": ocp.args.StandardSave(state["params"]),
                 "opt_state": ocp.args.StandardSave(state["opt_state"]),
                 "meta": ocp.args.JsonSave(dict(meta, step=step))}
        if iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointSave(iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def read_meta(self, step: int) -> dict[str, Any]:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, step: int, abstract_state: dict, iterator: grain.DatasetIterator | None
                ) -> tuple[dict, bool]:
        """(state laid out as `abstract_state` says, whether the iterator was moved)."""
        check_checkpoint_shapes(self.directory / str(step) / "params", abstract_state["params"])
        items = {"params": ocp.args.StandardRestore(abstract_state["params"]),
                 "opt_state": ocp.args.StandardRestore(abstract_state["opt_state"])}
        if iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        state = {"step": jax.device_put(jax.numpy.int32(step), abstract_state["step"].sharding),
                 "params": restored["params"], "opt_state": restored["opt_state"]}
        return state, iterator is not None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def restore_params_item(step_dir: str | Path, abstract_params) -> Any:
    """Only the params of one step directory (for export and evaluation)."""
    path = Path(step_dir).absolute() / "params"
    check_checkpoint_shapes(path, abstract_params)
    return read_params(path, abstract_params)

