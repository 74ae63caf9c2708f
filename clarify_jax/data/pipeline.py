"""The training input pipeline on Grain's Dataset API: rows -> packed, per-host numpy batches.

Per source: shuffle (reseeded each epoch) ▸ repeat ▸ this host's slice ▸ render; then a weighted
mixture ▸ optional multiprocess prefetch ▸ too-long handling ▸ first-fit packing ▸ batch with
next-token targets. Every step is index-based or carries its state in the iterator, so the whole
iterator state checkpoints and restores exactly.

Kinds (0 prompt, 1 clarify, 2 code) come from `render` for each INPUT token. The loss needs them
for the token being predicted, so batches also carry `targets` / `target_kinds` (see
`_add_targets`) and the float masks `clarify_mask` / `code_mask` / `decision_mask` over target positions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import grain
import jax
import numpy as np

from clarify_jax.data.render import KIND_CLARIFY, KIND_CODE, KIND_PROMPT

Render = Callable[[dict], "tuple[np.ndarray, np.ndarray]"]

_SEQUENCE_FEATURES = ("tokens", "kinds")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    batch_size: int  # global rows per step, over all hosts
    seq_len: int
    seed: int = 0
    too_long: Literal["truncate", "drop"] = "truncate"
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever
    prefetch_workers: int = 0  # >0: render in that many grain worker processes

    def per_host_batch(self, process_count: int | None = None) -> int:
        count = jax.process_count() if process_count is None else process_count
        if self.batch_size % count:
            raise ValueError(
                f"global batch_size {self.batch_size} is not divisible by the "
                f"{count} processes; every host must get the same number of rows"
            )
        return self.batch_size // count


@dataclasses.dataclass
class TooLongStats:
    """Counts of examples longer than seq_len, seen by one iterator in the main process.

    Not part of the checkpointed state: after a restore they count from zero again."""

    examples: int = 0
    truncated_examples: int = 0
    truncated_tokens: int = 0
    dropped_examples: int = 0
    dropped_tokens: int = 0


def load_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped): a random-access source."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_pipeline(
    sources: Sequence[tuple[Any, float]],
    render: Render,
    config: PipelineConfig,
    stats: TooLongStats | None = None,
) -> grain.IterDataset:
    """An IterDataset of this host's batches: dicts of numpy arrays `[per_host_batch, seq_len]`.

    `sources` are `(random-access rows, weight)`; `stats`, if given, is updated as examples pass.
    """
    if not sources:
        raise ValueError("build_pipeline needs at least one source")
    if config.too_long not in ("truncate", "drop"):
        raise ValueError(f"too_long must be 'truncate' or 'drop', not {config.too_long!r}")
    host_batch = config.per_host_batch()
    stats = stats if stats is not None else TooLongStats()

    ds = rendered_mixture(sources, render, config)
    it = ds.to_iter_dataset()
    if config.prefetch_workers > 0:
        _ensure_absl_flags_parsed()
        # Workers read interleaved slices and are read round-robin, so the order is unchanged;
        # the stages below stay in this process, so filtering and the stats do not depend on it.
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.prefetch_workers))
    it = it.map(_FitLength(config.seq_len, config.too_long, stats))
    if config.too_long == "drop":
        it = it.filter(lambda example: example is not None)
    it = grain.experimental.FirstFitPackIterDataset(
        it,
        length_struct={k: config.seq_len for k in _SEQUENCE_FEATURES},
        num_packing_bins=host_batch,
        seed=config.seed,
    )
    return it.batch(host_batch, batch_fn=_BatchPackedRows(host_batch, config.seq_len))


def rendered_mixture(
    sources: Sequence[tuple[Any, float]], render: Render, config: PipelineConfig
) -> grain.MapDataset:
    """This host's rendered examples ({"tokens", "kinds"}), mixed by weight, in training order."""
    process_index, process_count = jax.process_index(), jax.process_count()
    per_source = []
    for source_index, (rows, _) in enumerate(sources):
        ds = grain.MapDataset.source(rows)
        if config.shuffle:
            # A distinct seed per source so two sources of the same rows are not shuffled alike.
            ds = ds.shuffle(seed=(config.seed + 7919 * source_index) % 2**32)
        ds = ds.repeat(config.num_epochs)  # reseeds the shuffle each epoch
        # Every host sees the same shuffled order and keeps every process_count-th row, before
        # the expensive render, so hosts read disjoint parts that together cover each epoch.
        ds = ds[process_index::process_count]
        per_source.append(ds.map(_RenderExample(render)))
    weights = [float(w) for _, w in sources]
    # MapDataset.mix interleaves by index deterministically, so the choice of source per
    # position is fixed; the seed only changes which row each source gives. With finite epochs
    # the mixture ends when its first source runs out.
    return per_source[0] if len(per_source) == 1 else grain.MapDataset.mix(per_source, weights)


def make_iterator(
    sources: Sequence[tuple[Any, float]],
    render: Render,
    config: PipelineConfig,
    stats: TooLongStats | None = None,
) -> grain.DatasetIterator:
    """An iterator over `build_pipeline`'s batches whose state `save_data_state` checkpoints."""
    return iter(build_pipeline(sources, render, config, stats))


def make_global_batch(host_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
    """Global arrays `[global_batch, seq_len]` from each host's rows, batch over (data, fsdp).

    `sharding` is a `LogicalSharding`; every host calls this with its own `host_batch`."""
    target = sharding.named(("batch", "length"))
    return {name: jax.make_array_from_process_local_data(target, array) for name, array in host_batch.items()}


def _checkpoint_manager(directory: str | Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        Path(directory).absolute(), options=ocp.CheckpointManagerOptions(create=True)
    )


def save_data_state(directory: str | Path, iterator: grain.DatasetIterator, step: int = 0) -> None:
    """Saves the iterator's position as `data_iter` of an orbax checkpoint (one JSON per host),
    the same item the training checkpoint uses beside the model state."""
    import grain.checkpoint
    import orbax.checkpoint as ocp

    with _checkpoint_manager(directory) as manager:
        manager.save(
            step, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(iterator)), force=True
        )
        manager.wait_until_finished()


def restore_data_state(
    directory: str | Path, iterator: grain.DatasetIterator, step: int | None = None
) -> grain.DatasetIterator:
    """Moves `iterator` (from a pipeline built like the saved one) to the saved position
    (latest step by default); its next batch is the one an uninterrupted run would give."""
    import grain.checkpoint
    import orbax.checkpoint as ocp

    with _checkpoint_manager(directory) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no data-iterator checkpoint under {directory}")
        restored = manager.restore(
            step, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(iterator))
        )
    return restored["data_iter"]


class _RenderExample:
    """Row -> {"tokens": int32 [T], "kinds": int8 [T]}. A class, so workers can pickle it."""

    def __init__(self, render: Render):
        self._render = render

    def __call__(self, row: dict) -> dict[str, np.ndarray]:
        tokens, kinds = self._render(row)
        tokens, kinds = np.asarray(tokens, np.int32), np.asarray(kinds, np.int8)
        if tokens.shape != kinds.shape or tokens.ndim != 1:
            raise ValueError(
                f"render gave tokens {tokens.shape} and kinds {kinds.shape}; expected two equal 1-D arrays"
            )
        return {"tokens": tokens, "kinds": kinds}


class _FitLength:
    """Truncates (or drops: returns None) examples longer than seq_len, and counts them."""

    def __init__(self, seq_len: int, too_long: str, stats: TooLongStats):
        self._seq_len, self._too_long, self._stats = seq_len, too_long, stats

    def __call__(self, example: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        self._stats.examples += 1
        excess = len(example["tokens"]) - self._seq_len
        if excess <= 0:
            return example
        if self._too_long == "drop":
            self._stats.dropped_examples += 1
            self._stats.dropped_tokens += len(example["tokens"])
            return None
        self._stats.truncated_examples += 1
        self._stats.truncated_tokens += excess
        return {k: v[: self._seq_len] for k, v in example.items()}


class _BatchPackedRows:
    """Stacks packed rows into the batch dict; a short last batch (finite epochs) is filled with
    padding rows so every batch has the same shape."""

    def __init__(self, host_batch: int, seq_len: int):
        self._host_batch, self._seq_len = host_batch, seq_len

    def __call__(self, rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        def stacked(key, dtype):
            out = np.zeros((self._host_batch, self._seq_len), dtype)
            for i, row in enumerate(rows):
                out[i] = row[key]
            return out

        batch = {
            "tokens": stacked("tokens", np.int32),
            "segment_ids": stacked("tokens_segment_ids", np.int32),
            "positions": stacked("tokens_positions", np.int32),
            "kinds": stacked("kinds", np.int8),
        }
        batch["kinds"][batch["segment_ids"] == 0] = KIND_PROMPT  # padding never carries a kind
        return _add_targets(batch)


def _add_targets(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Next-token targets within each packed segment.

    targets[b, t] = tokens[b, t + 1] and target_kinds[b, t] = kinds[b, t + 1] when position t + 1
    holds the next token of the same segment; otherwise (last token of a segment, padding)
    both are 0, so no prediction crosses a segment boundary. The masks select target positions
    whose predicted token is a clarifying-question / code token."""
    segments = batch["segment_ids"]
    has_next = np.zeros_like(segments, dtype=bool)
    has_next[:, :-1] = (segments[:, 1:] == segments[:, :-1]) & (segments[:, :-1] != 0)
    targets = np.zeros_like(batch["tokens"])
    targets[:, :-1] = batch["tokens"][:, 1:]
    target_kinds = np.zeros_like(batch["kinds"])
    target_kinds[:, :-1] = batch["kinds"][:, 1:]
    batch["targets"] = np.where(has_next, targets, 0).astype(np.int32)
    batch["target_kinds"] = np.where(has_next, target_kinds, KIND_PROMPT).astype(np.int8)
    batch["clarify_mask"] = (batch["target_kinds"] == KIND_CLARIFY).astype(np.float32)
    batch["code_mask"] = (batch["target_kinds"] == KIND_CODE).astype(np.float32)
    # The first token of each answer, predicted from the last prompt token: where the model
    # decides to ask or to code.
    answer_starts = (batch["target_kinds"] != KIND_PROMPT) & (batch["kinds"] == KIND_PROMPT)
    batch["decision_mask"] = answer_starts.astype(np.float32)
    return batch


def _ensure_absl_flags_parsed() -> None:
    # Grain's worker processes read absl flags, which fail when unparsed outside absl.app.run.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
