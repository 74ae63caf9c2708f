"""The training run directory (`clarify-jax train --out`): its layout, its checkpoints, and
finding a run or a step from a path.

    model/                         config.json and tokenizer files of the trained model (for export)
    train_config.json              the run's whole config
    metrics.jsonl, tensorboard/    (written by train/metrics_log.py)
    plots/loss.png                 loss per kind
    checkpoints/<step>/params      trainable params (the adapters alone under LoRA)
    checkpoints/<step>/opt_state   optimizer state
    checkpoints/<step>/data_iter   grain iterator state of the stage that was running
    checkpoints/<step>/meta        step, stage, model source, LoRA settings, the run config
    averaged/params, averaged/meta the mean of the last checkpoints' weights (`average_last` > 1;
                                   checkpoints/average.py), LoRA merged in; the run's model while
                                   it averages the latest step

A gs:// run directory works the same: orbax writes the checkpoints there, and the train loop
pushes the other files from a local staging copy (util/storage.py).

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

from clarify_jax.checkpoints.params import check_checkpoint_shapes, read_params
from clarify_jax.util.storage import as_path

MODEL_DIR = "model"
RUN_CONFIG_FILE = "train_config.json"
PLOT_FILE = "plots/loss.png"
CHECKPOINTS_DIR = "checkpoints"
AVERAGED_DIR = "averaged"
META_ITEM = "meta"
PARAMS_ITEM = "params"
AVERAGED_STEPS_KEY = "averaged_steps"  # in an averaged item's meta: the steps it is the mean of


class RunCheckpoints:
    def __init__(self, run_dir: str | Path, keep: int = 3, asynchronous: bool = True):
        self.directory = as_path(run_dir) / CHECKPOINTS_DIR
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, state: dict, iterator: grain.DatasetIterator | None, meta: dict[str, Any]) -> None:
        step = int(jax.device_get(state["step"]))
        items = {
            "params": ocp.args.StandardSave(state["params"]),
            "opt_state": ocp.args.StandardSave(state["opt_state"]),
            META_ITEM: ocp.args.JsonSave(dict(meta, step=step)),
        }
        if iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointSave(iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def read_meta(self, step: int) -> dict[str, Any]:
        items = {META_ITEM: ocp.args.JsonRestore()}
        return self.manager.restore(step, args=ocp.args.Composite(**items))[META_ITEM]

    def restore(
        self, step: int, abstract_state: dict, iterator: grain.DatasetIterator | None
    ) -> tuple[dict, bool]:
        """(state laid out as `abstract_state` says, whether the iterator was moved)."""
        check_checkpoint_shapes(self.directory / str(step) / PARAMS_ITEM, abstract_state["params"])
        items = {
            "params": ocp.args.StandardRestore(abstract_state["params"]),
            "opt_state": ocp.args.StandardRestore(abstract_state["opt_state"]),
        }
        if iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        state = {
            "step": jax.device_put(jax.numpy.int32(step), abstract_state["step"].sharding),
            "params": restored["params"],
            "opt_state": restored["opt_state"],
        }
        return state, iterator is not None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def finished_steps(run_dir: str | Path) -> list[int]:
    """The run's saved steps, oldest first. Orbax writes a step under a temporary name and
    renames it when done, so a numbered directory with its meta item is a finished save."""
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit() and (p / META_ITEM).is_dir())


def find_run(path: str | Path) -> tuple[Path, Path] | None:
    """(run directory, step directory) when `path` is a training run, one of its
    `checkpoints/<step>` directories or its `averaged` directory; None when it is neither. A run
    stands for its averaged weights while they average its latest step, else for that step."""
    path = Path(path)
    if path.parent.name == CHECKPOINTS_DIR and (path / META_ITEM).is_dir():
        return path.parent.parent, path
    if path.name == AVERAGED_DIR and (path / META_ITEM).is_dir():
        return path.parent, path
    if (path / CHECKPOINTS_DIR).is_dir() and (path / MODEL_DIR / "config.json").exists():
        steps = finished_steps(path)
        if not steps:
            raise FileNotFoundError(f"{path}: a training run without finished checkpoints")
        # A run resumed past its average leaves a stale one behind: the latest step wins then.
        if (averaged_steps(path) or [None])[-1] == steps[-1]:
            return path, path / AVERAGED_DIR
        return path, path / CHECKPOINTS_DIR / str(steps[-1])
    return None


def averaged_steps(run_dir: str | Path) -> list[int] | None:
    """The steps whose mean the run's `averaged` item holds; None when it has none (complete)."""
    averaged = as_path(run_dir) / AVERAGED_DIR
    if not (averaged / META_ITEM).is_dir():
        return None
    return list(read_step_meta(averaged)[AVERAGED_STEPS_KEY])


def holds_merged_model(meta: dict[str, Any]) -> bool:
    """Whether a step-shaped item holds a plain model (an average, LoRA merged in) rather than
    the trainable params of one step."""
    return AVERAGED_STEPS_KEY in meta


def read_step_meta(step_dir: str | Path) -> dict[str, Any]:
    """The run metadata saved with a step (stage, model source, LoRA settings, the run config)."""
    handler = ocp.JsonCheckpointHandler()
    try:
        return dict(handler.restore(as_path(step_dir) / META_ITEM, args=ocp.args.JsonRestore()))
    finally:
        handler.close()


def restore_params_item(step_dir: str | Path, abstract_params) -> Any:
    """Only the params of one step directory (for export and evaluation)."""
    path = as_path(step_dir) / PARAMS_ITEM
    check_checkpoint_shapes(path, abstract_params)
    return read_params(path, abstract_params)
