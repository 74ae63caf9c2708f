"""`clarify-jax convert`, `export` and `synthesize` as a user runs them: separate processes, real files."""

import json

import numpy as np
import pytest

from tests.support.cli import run_cli
from tests.support.hf_models import hf_logits

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out

TOKENS = np.random.default_rng(4).integers(0, 256, (2, 9)).astype(np.int32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_convert_then_export_reloads_in_transformers(tiny_models, tmp_path, dtype):
    source = tiny_models("qwen2")
    (source / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    converted = run_cli("convert", "--model", source, "--out", tmp_path / "ckpt", "--dtype", dtype)
    assert converted.returncode == 0, converted.stderr
    assert (tmp_path / "ckpt" / "params").is_dir()
    assert (tmp_path / "ckpt" / "tokenizer_config.json").exists()
    exported = run_cli("export", "--source", tmp_path / "ckpt", "--out", tmp_path / "hf")
    assert exported.returncode == 0, exported.stderr
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["torch_dtype"] == dtype and config["model_type"] == "qwen2"
    assert (tmp_path / "hf" / "tokenizer_config.json").exists()
    error = np.abs(hf_logits(tmp_path / "hf", TOKENS) - hf_logits(source, TOKENS)).max()
    # float32 is lossless; bfloat16 weights move logits by a few bf16 steps (see the parity test).
    assert error <= (1e-6 if dtype == "float32" else 4 * 2**-8 * np.abs(hf_logits(source, TOKENS)).max())


def test_convert_and_export_spread_over_a_mesh(tiny_models, tmp_path):
    source = tiny_models("llama")
    env_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    converted = run_cli(
        "convert",
        "--model",
        source,
        "--out",
        tmp_path / "ckpt",
        "--dtype",
        "float32",
        "--mesh",
        "1,2,2",
        env=env_devices,
    )
    assert converted.returncode == 0, converted.stderr
    exported = run_cli(
        "export", "--source", tmp_path / "ckpt", "--out", tmp_path / "hf", "--mesh", "1,-1,1", env=env_devices
    )
    assert exported.returncode == 0, exported.stderr
    assert np.abs(hf_logits(tmp_path / "hf", TOKENS) - hf_logits(source, TOKENS)).max() <= 1e-6
    refused = run_cli(
        "convert", "--model", source, "--out", tmp_path / "x", "--mesh", "3,-1,1", env=env_devices
    )
    assert refused.returncode == 2 and "3 does not divide the 4 devices" in refused.stderr


def test_help_explains_every_flag():
    result = run_cli("convert", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--out", "--dtype"):
        assert flag in result.stdout
    assert "Hugging Face model directory" in result.stdout


def test_bad_source_is_one_clear_line(tmp_path):
    result = run_cli("convert", "--model", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == f"clarify-jax: error: {tmp_path / 'nowhere'}: not a directory"


def test_synthesize_takes_a_backend_spec(shared_data, tmp_path):
    help_text = run_cli("synthesize", "--help").stdout
    for text in (
        "--backend STR",
        "openai:<model>[@<base_url>]",
        "local:<dir>",
        "--api-key-env",
        "--request-timeout-s",
        "--batch-size",
    ):
        assert text in help_text
    source = (
        "--source",
        "mbpp",
        "--input",
        shared_data / "mbpp" / "sanitized-mbpp.json",
        "--limit",
        2,
        "--no-check-references",
    )
    result = run_cli(
        "synthesize", *source, "--out", tmp_path / "bad", "--backend", "openai:qwen@localhost:8000"
    )
    assert result.returncode == 2 and not (tmp_path / "bad").exists()
    assert result.stderr.strip() == (
        "clarify-jax: error: --backend spec 'openai:qwen@localhost:8000': the base URL after '@' "
        "('localhost:8000') must start with http:// or https://; expected openai:<model>[@<base_url>], "
        "local:<checkpoint dir> or rules"
    )
    result = run_cli("synthesize", *source, "--out", tmp_path / "rules")  # --backend rules by default
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "rules" / "summary.json").read_text())
    assert summary["attempted"] == 8 and summary["rows"] == dict.fromkeys(
        ("original", "ambiguous", "inconsistent", "incomplete"), 2
    )
