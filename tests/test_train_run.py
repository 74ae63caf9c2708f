"""`clarify-jax train` end to end on rules-synthesized MBPP dialogues and a tiny llama: overfitting,
SIGTERM and SIGKILL with resume, config errors, LoRA export, and two hosts equal to one."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from clarify_jax.cli import main
from clarify_jax.train.metrics_log import read_records
from tests.support.train_setup import synthesized_data, tiny_chat_model

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("train_inputs")
    data = synthesized_data(root / "synth", shared_data / "mbpp" / "sanitized-mbpp.json")
    model = tiny_chat_model(root / "model", data / "train.jsonl")
    return {"model": model, "data": data, "cache": root / "jax_cache"}


def train_args(inputs, out, *extra, preset="tiny-cpu"):
    data = inputs["data"]
    return [
        preset,
        "--model",
        str(inputs["model"]),
        "--out",
        str(out),
        "--data.sources",
        f"clear={data}/train.jsonl:original",
        f"clarify={data}/train.jsonl:ambiguous,inconsistent,incomplete",
        "--data.validation",
        f"v={data}/validation.jsonl",
        "--data.seq-len",
        "256",
        "--data.batch-size",
        "4",
        "--data.no-round1-instruction",
        "--data.no-answer-prefix",
        "--no-progress",
        "--log-every",
        "1",
        *extra,
    ]


def subprocess_env(inputs, devices: int) -> dict:
    # The runs of a test share one persistent compilation cache, so only the first one compiles.
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR=str(inputs["cache"]),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def start_train(inputs, args, devices=2):
    return subprocess.Popen(
        [sys.executable, "-m", "clarify_jax.cli", "train", *args],
        env=subprocess_env(inputs, devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_step(process, metrics_path, step, timeout=300):
    """Blocks until the run has logged `step`, then freezes it (SIGSTOP) so it cannot run ahead."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [r["step"] for r in read_records(metrics_path) if r["split"] == "train"]
        if steps and steps[-1] >= step:
            process.send_signal(signal.SIGSTOP)
            return steps[-1]
        if process.poll() is not None:
            raise AssertionError(f"run ended before step {step}:\n{process.stdout.read()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no step {step} within {timeout} s")


def final_params(run_dir, step):
    path = (run_dir / "checkpoints" / str(step) / "params").absolute()
    return ocp.StandardCheckpointer().restore(path)


def train_losses(run_dir):
    return {r["step"]: r["loss"] for r in read_records(run_dir / "metrics.jsonl") if r["split"] == "train"}


def shortest_rows(inputs, types, count=1):
    """The rows of these types with the fewest tokens (whole dialogues fit a 256-token row)."""
    from clarify_jax.data.render import DialogueRenderer
    from clarify_jax.hf.tokenizer import Tokenizer

    render = DialogueRenderer(Tokenizer(inputs["model"]))
    rows = [json.loads(line) for line in (inputs["data"] / "train.jsonl").read_text().splitlines()]
    return sorted((r for r in rows if r["type"] in types), key=lambda r: len(render(r)[0]))[:count]


def test_tiny_model_overfits_a_tiny_set(inputs, tmp_path):
    rows = shortest_rows(inputs, ("original",)) + shortest_rows(inputs, ("ambiguous", "incomplete"))
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = train_args(
        inputs,
        tmp_path / "run",
        "--stages.0.steps",
        "90",
        "--stages.0.learning-rate",
        "1e-2",
        "--stages.0.warmup-steps",
        "5",
        "--stages.0.code-weight",
        "1.0",
        "--stages.1.steps",
        "10",
        "--stages.1.learning-rate",
        "1e-3",
        "--checkpoint-every",
        "0",
        "--eval-every",
        "0",
        "--data.batch-size",
        "2",
        "--mesh",
        "1,1,1",
    )
    sources = slice(args.index("--data.sources") + 1, args.index("--data.validation"))
    args[sources] = [f"both={tmp_path / 'two.jsonl'}"]
    process = start_train(inputs, args, devices=1)
    assert process.wait(timeout=600) == 0, process.stdout.read()
    records = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    first, last = records[0], records[-1]
    assert last["step"] == 100 and first["tokens/code"] > 0 and first["tokens/clarify"] > 0
    for kind in ("clarify", "code"):
        assert last[f"loss/{kind}"] <= 0.1 * first[f"loss/{kind}"], (kind, first, last)
    assert (tmp_path / "run" / "plots" / "loss.png").stat().st_size > 10_000


def test_sigterm_then_sigkill_then_resume_equals_an_uninterrupted_run(inputs, tmp_path):
    steps = [
        "--stages.0.steps",
        "10",
        "--stages.1.steps",
        "10",
        "--checkpoint-every",
        "3",
        "--eval-every",
        "4",
        "--eval-batches",
        "1",
    ]
    reference = tmp_path / "reference"
    done = start_train(inputs, train_args(inputs, reference, *steps))
    assert done.wait(timeout=600) == 0, done.stdout.read()

    run = tmp_path / "interrupted"
    first = start_train(inputs, train_args(inputs, run, *steps))
    wait_for_step(first, run / "metrics.jsonl", 4)
    first.send_signal(signal.SIGTERM)
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0
    output = first.stdout.read()
    assert "SIGTERM: saved step" in output, output
    stopped_at = int(output.split("SIGTERM: saved step ")[1].split()[0])
    assert 4 <= stopped_at < 20
    assert (run / "checkpoints" / str(stopped_at) / "params").is_dir()

    second = start_train(inputs, train_args(inputs, run, *steps, "--resume"))
    wait_for_step(second, run / "metrics.jsonl", 14)  # past the stage boundary at 10
    second.kill()  # SIGKILL: no chance to save
    second.wait()
    assert second.returncode == -signal.SIGKILL

    third = start_train(inputs, train_args(inputs, run, *steps, "--resume"))
    assert third.wait(timeout=600) == 0, third.stdout.read()

    expected, resumed = train_losses(reference), train_losses(run)
    assert sorted(resumed) == list(range(1, 21))  # every step logged once
    np.testing.assert_allclose(
        [resumed[s] for s in range(1, 21)], [expected[s] for s in range(1, 21)], rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(final_params(run, 20)), jax.tree.leaves(final_params(reference, 20))):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_config_errors_before_anything_compiles(inputs, tmp_path, capsys):
    cases = [
        (["--mesh", "3,-1,1"], "does not divide the 8 devices"),
        (["--data.batch-size", "6"], "not divisible by the 8 batch shards"),
        (["--data.batch-size", "8", "--grad-accum", "3"], "not divisible by grad_accum 3"),
        (
            ["--data.batch-size", "8", "--lora.targets", "q_proj", "attn"],
            "unknown LoRA target modules ['attn']",
        ),
        (["--data.batch-size", "8", "--stages.0.mixture", "clear=1,other=2"], "'other=2' is not name=weight"),
        (["--data.batch-size", "8", "--average-last", "4"], "keep_checkpoints >= average_last (it is 3)"),
        (
            ["--data.batch-size", "8", "--data.sources", "x=/nonexistent.jsonl"],
            "/nonexistent.jsonl does not exist",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", *train_args(inputs, tmp_path / "bad", *extra)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, extra

    # A checkpoint of another model shape: a 32-wide model resuming the 64-wide run.
    run = tmp_path / "run"
    main(
        [
            "train",
            *train_args(
                inputs, run, "--stages.0.steps", "1", "--stages.1.steps", "1", "--data.batch-size", "8"
            ),
        ]
    )
    narrow = tiny_chat_model(tmp_path / "narrow", inputs["data"] / "train.jsonl", hidden_size=32)
    args = train_args(inputs, run, "--stages.0.steps", "3", "--data.batch-size", "8", "--resume")
    args[args.index("--model") + 1] = str(narrow)
    with pytest.raises(SystemExit):
        main(["train", *args])
    assert "the config asks for [512, 32]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *train_args(inputs, run, "--data.batch-size", "8")])
    assert "already holds checkpoints" in capsys.readouterr().err


def test_lora_run_averages_and_exports_a_merged_model_that_transformers_loads(inputs, tmp_path, caplog):
    import torch
    import transformers

    from clarify_jax.checkpoints.load import load_model
    from clarify_jax.model.lora import combine
    from clarify_jax.model.transformer import forward

    run = tmp_path / "lora"
    lora_args = [
        "--stages.0.learning-rate",
        "5e-2",
        "--data.batch-size",
        "8",
        "--lora.dropout",
        "0.1",
        "--lora.targets",
        "q_proj",
        "v_proj",
        "down_proj",
        "--checkpoint-every",
        "1",
    ]
    main(
        [
            "train",
            *train_args(
                inputs,
                run,
                "--stages.0.steps",
                "3",
                "--average-last",
                "2",
                *lora_args,
                preset="tiny-cpu-lora",
            ),
        ]
    )
    adapters = final_params(run, 3)
    assert float(np.abs(adapters["layers"]["self_attn"]["q_proj"]["lora_b"]).max()) > 0

    # The run's model is the mean of the merged models of steps 2 and 3.
    base_cfg, base = load_model(inputs["model"])
    _, step2 = load_model(run / "checkpoints" / "2")
    _, step3 = load_model(run / "checkpoints" / "3")
    plain_cfg, averaged = load_model(run)
    assert plain_cfg.lora_rank == 0
    for mean, a, b in zip(jax.tree.leaves(averaged), jax.tree.leaves(step2), jax.tree.leaves(step3)):
        np.testing.assert_allclose(
            np.asarray(mean), (np.asarray(a) + np.asarray(b)) / 2, rtol=1e-6, atol=1e-7
        )
    q = ("layers", "self_attn", "q_proj", "kernel")
    assert np.abs(_at(step2, q) - _at(step3, q)).max() > 1e-3  # two different models were averaged
    np.testing.assert_array_equal(
        _at(averaged, ("embed_tokens", "embedding")), _at(base, ("embed_tokens", "embedding"))
    )

    # Merging the adapters into the base gives the model the adapters give.
    tokens = np.random.default_rng(0).integers(0, 500, (2, 40)).astype(np.int32)
    cfg = base_cfg.replace(lora_rank=8, lora_alpha=16.0, lora_targets=("q_proj", "v_proj", "down_proj"))
    with_adapters = np.asarray(forward(cfg, combine(jax.device_put(adapters), base), tokens))
    np.testing.assert_allclose(np.asarray(forward(plain_cfg, step3, tokens)), with_adapters, atol=1e-5)

    with caplog.at_level(logging.WARNING):
        main(["export", "--source", str(run), "--out", str(tmp_path / "hf")])
    assert [r.getMessage() for r in caplog.records if "CHECKPOINT_METADATA" in r.getMessage()] == []
    assert "the mean of the checkpoints of steps 2, 3" in (tmp_path / "hf" / "README.md").read_text()
    ours = np.asarray(forward(plain_cfg, averaged, tokens))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    with torch.no_grad():
        theirs = model(torch.as_tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    untrained = np.asarray(forward(base_cfg, base, tokens))
    assert np.abs(untrained - ours).max() > 1e-3  # the adapters changed the model

    # Resumed past its average without averaging, the run stands for its latest step again.
    main(
        [
            "train",
            *train_args(inputs, run, "--stages.0.steps", "4", "--resume", *lora_args, preset="tiny-cpu-lora"),
        ]
    )
    _, latest = load_model(run)
    _, step4 = load_model(run / "checkpoints" / "4")
    np.testing.assert_array_equal(_at(latest, q), _at(step4, q))
    _, still_averaged = load_model(run / "averaged")
    np.testing.assert_array_equal(_at(still_averaged, q), _at(averaged, q))
    # Averaging again replaces the old average.
    main(
        [
            "train",
            *train_args(
                inputs,
                run,
                "--stages.0.steps",
                "5",
                "--resume",
                "--average-last",
                "2",
                *lora_args,
                preset="tiny-cpu-lora",
            ),
        ]
    )
    _, step5 = load_model(run / "checkpoints" / "5")
    _, latest = load_model(run)
    np.testing.assert_allclose(_at(latest, q), (_at(step4, q) + _at(step5, q)) / 2, rtol=1e-6, atol=1e-7)


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return np.asarray(tree)


def test_two_hosts_of_four_devices_equal_one_host_of_eight(inputs, tmp_path):
    steps = [
        "--stages.0.steps",
        "3",
        "--stages.1.steps",
        "1",
        "--checkpoint-every",
        "0",
        "--eval-every",
        "0",
        "--data.seq-len",
        "128",
        "--data.batch-size",
        "8",
    ]
    single = start_train(inputs, train_args(inputs, tmp_path / "single", *steps), devices=8)
    assert single.wait(timeout=600) == 0, single.stdout.read()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts = [
        start_train(
            inputs,
            train_args(
                inputs,
                tmp_path / "multi",
                *steps,
                "--distributed.initialize",
                "--distributed.coordinator-address",
                f"127.0.0.1:{port}",
                "--distributed.num-processes",
                "2",
                "--distributed.process-id",
                str(i),
            ),
            devices=4,
        )
        for i in range(2)
    ]
    for host in hosts:
        assert host.wait(timeout=600) == 0, host.stdout.read()
    single_losses, multi_losses = train_losses(tmp_path / "single"), train_losses(tmp_path / "multi")
    assert sorted(multi_losses) == [1, 2, 3, 4]
    np.testing.assert_allclose(
        [multi_losses[s] for s in range(1, 5)], [single_losses[s] for s in range(1, 5)], rtol=1e-5
    )
    assert json.loads((tmp_path / "multi" / "train_config.json").read_text())["distributed"]["initialize"]
