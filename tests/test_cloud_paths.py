"""Every command on gs:// paths, against a real Cloud Storage emulator (fake-gcs-server): a
LoRA run on a bucket (base model, data and run directory all there) stopped by SIGTERM and
resumed on a machine with an empty cache, then exported; convert into a bucket and export back;
synthesize and evaluate into a bucket."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clarify_jax.util import storage
from tests.support.train_setup import synthesized_data, tiny_chat_model

pytestmark = pytest.mark.slow  # real processes and an emulator


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("cloud_inputs")
    data = synthesized_data(root / "synth", shared_data / "mbpp" / "sanitized-mbpp.json")
    return {"model": tiny_chat_model(root / "model", data / "train.jsonl"), "data": data}


def upload(local_dir, url):
    remote = storage.as_path(url)
    for path in local_dir.rglob("*"):
        if path.is_file():
            target = remote / path.relative_to(local_dir).as_posix()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def cli(*args, cache, wait=True):
    """`clarify-jax ARGS` in its own process, with its own cache (a machine of its own)."""
    import os

    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", CLARIFY_JAX_CACHE=str(cache))
    command = [sys.executable, "-m", "clarify_jax.cli", *map(str, args)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return output


def remote_train_steps(url):
    metrics = storage.as_path(url) / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if r["split"] == "train"]


def test_a_lora_run_on_a_bucket_resumes_elsewhere_and_exports(
    local_inputs, gcs_bucket, tmp_path, monkeypatch
):
    import torch
    import transformers

    from clarify_jax.checkpoints.load import load_model
    from clarify_jax.model.transformer import forward

    upload(local_inputs["model"], f"{gcs_bucket}/base")
    upload(local_inputs["data"], f"{gcs_bucket}/data")
    run = f"{gcs_bucket}/run"
    data = f"{gcs_bucket}/data/train.jsonl"
    args = ["train", "tiny-cpu-lora", "--model", f"{gcs_bucket}/base", "--out", run]
    args += ["--data.sources", f"clear={data}:original", f"clarify={data}:ambiguous,inconsistent,incomplete"]
    args += ["--data.seq-len", "256", "--data.batch-size", "4", "--stages.0.steps", "6"]
    args += [
        "--stages.0.learning-rate",
        "5e-2",
        "--log-every",
        "1",
        "--checkpoint-every",
        "3",
        "--no-progress",
    ]

    first = cli(*args, cache=tmp_path / "machine1", wait=False)
    deadline = time.monotonic() + 300
    while not remote_train_steps(run) or remote_train_steps(run)[-1] < 2:  # pushed after each record
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 0 and "SIGTERM: saved step" in output, output
    stopped_at = int(output.split("SIGTERM: saved step ")[1].split()[0])
    assert 2 <= stopped_at < 6 and (storage.as_path(run) / "checkpoints" / str(stopped_at) / "meta").exists()

    cli(*args, "--resume", cache=tmp_path / "machine2")  # an empty cache: all it has is the bucket
    assert remote_train_steps(run) == [1, 2, 3, 4, 5, 6]  # the first machine's records were pulled back
    remote = storage.as_path(run)
    for name in ("train_config.json", "model/config.json", "plots/loss.png", "checkpoints/6/params"):
        assert (remote / name).exists(), name
    assert json.loads((remote / "train_config.json").read_text())["model"] == f"{gcs_bucket}/base"

    cli("export", "--source", run, "--out", tmp_path / "hf", cache=tmp_path / "machine3")
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "here"))
    cfg, params = load_model(run)  # straight from the bucket, the adapters merged
    tokens = np.random.default_rng(0).integers(0, 500, (2, 24)).astype(np.int32)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    with torch.no_grad():
        theirs = model(torch.as_tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(theirs, np.asarray(forward(cfg, params, tokens)), atol=1e-4)
    _, base = load_model(local_inputs["model"])
    assert np.abs(np.asarray(forward(cfg, base, tokens)) - theirs).max() > 1e-3  # training changed it


def test_convert_into_a_bucket_and_export_back(local_inputs, gcs_bucket, tmp_path):
    from safetensors.numpy import load_file

    cli("convert", "--model", local_inputs["model"], "--out", f"{gcs_bucket}/converted", "--dtype", "float32",
        cache=tmp_path / "a")  # fmt: skip
    remote = storage.as_path(f"{gcs_bucket}/converted")
    assert (remote / "params").is_dir() and (remote / "config.json").exists()
    cli("export", "--source", f"{gcs_bucket}/converted", "--out", tmp_path / "hf", cache=tmp_path / "b")
    original = load_file(local_inputs["model"] / "model.safetensors")
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        np.testing.assert_array_equal(exported[name], tensor)


def test_synthesize_and_evaluate_into_a_bucket(local_inputs, gcs_bucket, tmp_path, shared_data):
    mbpp = f"{gcs_bucket}/inputs/mbpp.jsonl"
    storage.as_path(mbpp).write_text(
        "".join((shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines(True)[:6])
    )
    synth = f"{gcs_bucket}/synth"
    cli("synthesize", "--source", "mbpp", "--input", mbpp, "--out", synth, "--validation-fraction", "0",
        cache=tmp_path / "a")  # fmt: skip
    rows = [json.loads(line) for line in (storage.as_path(synth) / "train.jsonl").read_text().splitlines()]
    assert len(rows) >= 16 and {r["type"] for r in rows} == {
        "original",
        "ambiguous",
        "inconsistent",
        "incomplete",
    }
    assert (storage.as_path(synth) / "synthesis_log.jsonl").exists()

    out = f"{gcs_bucket}/eval"
    args = ["evaluate", "--model", f"local:{local_inputs['model']}", "--benchmark", "mbpp"]
    args += ["--data", shared_data / "mbpp" / "sanitized-mbpp.json", "--limit", "2", "--max-tokens", "8"]
    cli(*args, "--out", out, "--mesh", "1,1,1", "--no-progress", cache=tmp_path / "b")
    summary = json.loads((storage.as_path(out) / "summary.json").read_text())
    assert summary["items"] == 2
    results = (storage.as_path(out) / "results.jsonl").read_text().splitlines()
    assert len(results) == 2
