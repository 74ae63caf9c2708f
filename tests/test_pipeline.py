"""The Grain input pipeline: determinism, resume, lossless packing, kinds and targets, mixture,
per-host slicing (two real processes) and global arrays."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from clarify_jax.data.pipeline import (
    PipelineConfig,
    TooLongStats,
    build_pipeline,
    make_global_batch,
    make_iterator,
    rendered_mixture,
    restore_data_state,
    save_data_state,
)
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding

STRIDE = 1000  # token id = example index * STRIDE + position: every token is unique and traceable


def make_rows(count: int, start: int = 0) -> list[dict]:
    """Dialogue rows of varied lengths (3..47 tokens under `fake_render`)."""
    rows = []
    for i in range(start, start + count):
        problem = "p" * (2 + i % 11)
        if i % 3 == 0:
            dialogue = [
                {"role": "user", "content": problem},
                {"role": "assistant", "kind": "code", "content": "c" * (1 + i % 7)},
            ]
        else:
            dialogue = [
                {"role": "user", "content": problem},
                {"role": "assistant", "kind": "clarify", "content": "q" * (1 + i % 5)},
                {"role": "user", "content": "a" * (1 + i % 4)},
                {"role": "assistant", "kind": "code", "content": "c" * (1 + i % 23)},
            ]
        rows.append(
            {
                "id": f"row-{i}",
                "problem_id": f"p{i}",
                "type": "original",
                "problem": problem,
                "answer": "",
                "dialogue": dialogue,
            }
        )
    return rows


def expected_kinds(row: dict) -> np.ndarray:
    """One kind per character: 0 for user turns, 1 clarify, 2 code."""
    kind_of = {"clarify": 1, "code": 2}
    return np.concatenate(
        [np.full(len(t["content"]), kind_of.get(t.get("kind"), 0), np.int8) for t in row["dialogue"]]
    )


def fake_render(row: dict):
    index = int(row["id"].split("-")[1])
    kinds = expected_kinds(row)
    return index * STRIDE + np.arange(len(kinds), dtype=np.int32), kinds


def take(iterator, count: int) -> list[dict]:
    return [next(iterator) for _ in range(count)]


def assert_same_batches(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


ROWS = make_rows(120)
CONFIG = PipelineConfig(batch_size=4, seq_len=32, seed=3)


def test_batch_layout_and_dtypes():
    batch = next(make_iterator([(ROWS, 1.0)], fake_render, CONFIG))
    dtypes = {
        "tokens": np.int32,
        "segment_ids": np.int32,
        "positions": np.int32,
        "kinds": np.int8,
        "targets": np.int32,
        "target_kinds": np.int8,
        "clarify_mask": np.float32,
        "code_mask": np.float32,
        "decision_mask": np.float32,
    }
    assert {k: v.dtype for k, v in batch.items()} == dtypes
    assert all(v.shape == (4, 32) for v in batch.values())


def test_same_seed_same_batches_other_seed_other_batches():
    first = take(make_iterator([(ROWS, 1.0)], fake_render, CONFIG), 5)
    assert_same_batches(first, take(make_iterator([(ROWS, 1.0)], fake_render, CONFIG), 5))
    other = take(make_iterator([(ROWS, 1.0)], fake_render, dataclasses.replace(CONFIG, seed=4)), 5)
    assert any(not np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(first, other))


def test_resume_from_orbax_checkpoint_continues_exactly(tmp_path):
    config = dataclasses.replace(CONFIG, num_epochs=None)
    sources = [(ROWS, 0.6), (make_rows(50, start=500), 0.4)]
    iterator = make_iterator(sources, fake_render, config)
    take(iterator, 7)  # past the first packed group, so the state is mid-stream
    save_data_state(tmp_path / "ckpt", iterator, step=7)
    uninterrupted = take(iterator, 6)

    fresh = make_iterator(sources, fake_render, config)
    fresh = restore_data_state(tmp_path / "ckpt", fresh)
    assert_same_batches(take(fresh, 6), uninterrupted)


def epoch_tokens(batches: list[dict]) -> np.ndarray:
    return np.concatenate([b["tokens"][b["segment_ids"] > 0] for b in batches])


def test_truncate_packs_every_token_exactly_once():
    config = dataclasses.replace(CONFIG, seq_len=24, num_epochs=1, too_long="truncate")
    stats = TooLongStats()
    batches = list(build_pipeline([(ROWS, 1.0)], fake_render, config, stats))
    seen = epoch_tokens(batches)
    assert len(np.unique(seen)) == len(seen), "a token was duplicated"

    lengths = np.array([len(expected_kinds(r)) for r in ROWS])
    expected = np.concatenate([i * STRIDE + np.arange(min(n, 24)) for i, n in enumerate(lengths)])
    np.testing.assert_array_equal(np.sort(seen), np.sort(expected))
    too_long = lengths > 24
    assert stats.truncated_examples == too_long.sum() > 0
    assert stats.truncated_tokens == (lengths[too_long] - 24).sum()
    assert stats.examples == len(ROWS) and stats.dropped_examples == 0


def test_drop_removes_exactly_the_too_long_examples():
    config = dataclasses.replace(CONFIG, seq_len=24, num_epochs=1, too_long="drop")
    stats = TooLongStats()
    seen = epoch_tokens(list(build_pipeline([(ROWS, 1.0)], fake_render, config, stats)))
    lengths = np.array([len(expected_kinds(r)) for r in ROWS])
    kept = [i for i, n in enumerate(lengths) if n <= 24]
    expected = np.concatenate([i * STRIDE + np.arange(lengths[i]) for i in kept])
    np.testing.assert_array_equal(np.sort(seen), np.sort(expected))
    assert stats.dropped_examples == len(ROWS) - len(kept) > 0
    assert stats.dropped_tokens == lengths[lengths > 24].sum()
    assert stats.truncated_examples == 0


def test_kinds_targets_segments_and_positions_exact():
    config = dataclasses.replace(CONFIG, seq_len=24, num_epochs=1)
    kinds_by_row = [expected_kinds(r) for r in ROWS]
    for batch in build_pipeline([(ROWS, 1.0)], fake_render, config):
        tokens, segments, positions = batch["tokens"], batch["segment_ids"], batch["positions"]
        padding = segments == 0
        for name in (
            "tokens",
            "positions",
            "kinds",
            "targets",
            "target_kinds",
            "clarify_mask",
            "code_mask",
            "decision_mask",
        ):
            assert not batch[name][padding].any(), f"{name} non-zero on padding"
        for row in range(tokens.shape[0]):
            for segment in np.unique(segments[row][segments[row] > 0]):
                where = np.flatnonzero(segments[row] == segment)
                # One contiguous segment holding one example from its first token on.
                assert (np.diff(where) == 1).all()
                seg_tokens = tokens[row, where]
                example, start = divmod(int(seg_tokens[0]), STRIDE)
                assert start == 0
                np.testing.assert_array_equal(seg_tokens, example * STRIDE + np.arange(len(where)))
                np.testing.assert_array_equal(positions[row, where], np.arange(len(where)))
                truth = kinds_by_row[example][: len(where)]
                np.testing.assert_array_equal(batch["kinds"][row, where], truth)
                # Targets: the next token of the same segment; none after its last token.
                np.testing.assert_array_equal(batch["targets"][row, where[:-1]], seg_tokens[1:])
                np.testing.assert_array_equal(batch["target_kinds"][row, where[:-1]], truth[1:])
                assert batch["targets"][row, where[-1]] == 0
                assert batch["target_kinds"][row, where[-1]] == 0
                # The decision: the position whose target is an answer's first token.
                starts = np.flatnonzero((truth[:-1] == 0) & (truth[1:] != 0))
                np.testing.assert_array_equal(np.flatnonzero(batch["decision_mask"][row, where]), starts)
        np.testing.assert_array_equal(batch["clarify_mask"], batch["target_kinds"] == 1)
        np.testing.assert_array_equal(batch["code_mask"], batch["target_kinds"] == 2)


def source_render(row: dict):
    return np.array([row["source"]], np.int32), np.zeros(1, np.int8)


def test_mixture_proportions_and_determinism():
    a = [{"source": 0, "i": i} for i in range(3000)]
    b = [{"source": 1, "i": i} for i in range(2000)]
    config = dataclasses.replace(CONFIG, num_epochs=None)
    mixed = rendered_mixture([(a, 0.7), (b, 0.3)], source_render, config)
    choices = np.array([mixed[i]["tokens"][0] for i in range(10_000)])
    assert abs((choices == 0).mean() - 0.7) < 0.01
    again = rendered_mixture([(a, 0.7), (b, 0.3)], source_render, config)
    np.testing.assert_array_equal(choices, [again[i]["tokens"][0] for i in range(10_000)])


def test_make_global_batch_on_eight_devices():
    sharding = LogicalSharding(make_mesh("2,2,2"))
    config = dataclasses.replace(CONFIG, batch_size=8)
    host_batch = next(make_iterator([(ROWS, 1.0)], fake_render, config))
    global_batch = make_global_batch(host_batch, sharding)
    for name, array in global_batch.items():
        assert isinstance(array, jax.Array) and array.shape == (8, 32)
        assert array.sharding.spec[0] == ("data", "fsdp")
        assert {s.data.shape for s in array.addressable_shards} == {(2, 32)}  # rows over 4 devices
        np.testing.assert_array_equal(np.asarray(array), host_batch[name])


def test_multiprocess_prefetch_gives_the_same_batches():
    config = dataclasses.replace(CONFIG, num_epochs=1)
    sequential = list(build_pipeline([(ROWS, 1.0)], fake_render, config))
    prefetched = list(
        build_pipeline([(ROWS, 1.0)], fake_render, dataclasses.replace(config, prefetch_workers=2))
    )
    assert_same_batches(sequential, prefetched)


HOST_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id)
    from clarify_jax.data.pipeline import PipelineConfig, build_pipeline, make_global_batch
    from clarify_jax.parallel.mesh import make_mesh
    from clarify_jax.parallel.sharding import LogicalSharding
    from tests.test_pipeline import ROWS, STRIDE, fake_render

    config = PipelineConfig(batch_size=4, seq_len=32, seed=5, num_epochs=1, shuffle=True)
    batches = list(build_pipeline([(ROWS, 1.0)], fake_render, config))
    starts = [int(t) // STRIDE for b in batches for t in b["tokens"][b["positions"] == 0]
              [b["segment_ids"][b["positions"] == 0] > 0]]
    global_batch = make_global_batch(batches[0], LogicalSharding(make_mesh("1,-1,1")))
    shapes = {k: list(v.shape) for k, v in global_batch.items()}
    json.dump({"examples": starts, "shapes": shapes, "devices": jax.device_count()},
              open(out, "w"))
    jax.distributed.shutdown()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_disjoint_slices_covering_the_data(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(repo),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    port = free_port()
    outs = [tmp_path / f"host{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOST_SCRIPT, str(port), str(i), str(outs[i])],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    results = [json.loads(o.read_text()) for o in outs]
    seen = [set(r["examples"]) for r in results]
    assert all(len(set(r["examples"])) == len(r["examples"]) for r in results)
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(len(ROWS)))
    for r in results:
        assert r["devices"] == 4
        assert set(map(tuple, r["shapes"].values())) == {(4, 32)}
