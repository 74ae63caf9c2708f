"""Hugging Face directories in and out: round trips through transformers, and clear errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from clarify_jax import hf, model
from clarify_jax.hf.safetensors_io import SafetensorsFile, write_safetensors
from clarify_jax.model import ConfigError
from tests.support.hf_models import TINY, hf_logits, save_tiny_model

TOKENS = np.random.default_rng(3).integers(0, 256, (2, 10)).astype(np.int32)


@pytest.mark.parametrize("variant", ["llama_linear", "qwen2_tied", "mistral"])
def test_export_round_trip_through_transformers(tiny_models, tmp_path, variant):
    source = tiny_models(variant)
    (source / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    cfg, params = hf.load_pretrained(source)
    out = hf.save_pretrained(cfg, params, tmp_path / "export", max_shard_size="40KB", source_dir=source)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    assert (out / "tokenizer_config.json").read_text() == (source / "tokenizer_config.json").read_text()
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 2

    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    original = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    assert type(reloaded) is type(original)
    theirs = original.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name  # bit-identical weights
    assert np.abs(hf_logits(out, TOKENS) - hf_logits(source, TOKENS)).max() <= 1e-6
    cfg_back, params_back = hf.load_pretrained(out)
    assert cfg_back == cfg
    ours = np.asarray(model.forward(cfg, params_back, TOKENS))
    assert np.abs(ours - hf_logits(source, TOKENS)).max() <= 1e-4


def test_sharded_hf_input_and_bfloat16_export(tmp_path):
    source = save_tiny_model("qwen2", tmp_path / "sharded", max_shard_size="50KB")
    assert (source / "model.safetensors.index.json").exists()
    cfg, params = hf.load_pretrained(source)
    assert np.abs(np.asarray(model.forward(cfg, params, TOKENS)) - hf_logits(source, TOKENS)).max() <= 1e-4

    out = hf.save_pretrained(cfg, params, tmp_path / "bf16", dtype="bfloat16")
    assert (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists()
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert SafetensorsFile(out / "model.safetensors").get("lm_head.weight").dtype.name == "bfloat16"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.dtype == torch.bfloat16
    expected = np.asarray(params["lm_head"]["kernel"].T.astype(jax.numpy.bfloat16), np.float32)
    assert np.array_equal(reloaded.lm_head.weight.detach().float().numpy(), expected)


# ---- bad input ----


def _copy(source, dst):
    shutil.copytree(source, dst)
    return dst


def _rewrite(path, change):
    """Rewrite a safetensors file with `change(dict of name -> array)` applied."""
    f = SafetensorsFile(path)
    tensors = {name: np.array(f.get(name)) for name in f.keys()}
    del f
    change(tensors)
    write_safetensors(path, [(n, t.shape, t.dtype) for n, t in tensors.items()], tensors.__getitem__)


def test_missing_config_names_the_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        hf.load_pretrained(tmp_path)


def test_unsupported_model_type(tiny_models, tmp_path):
    d = _copy(tiny_models("llama"), tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ConfigError, match=r"config\.json: unsupported model_type 'gpt2'"):
        hf.load_pretrained(d)


def test_tensor_of_wrong_shape(tiny_models, tmp_path):
    d = _copy(tiny_models("llama"), tmp_path / "m")
    name = "model.layers.1.mlp.up_proj.weight"
    _rewrite(d / "model.safetensors", lambda t: t.__setitem__(name, t[name][:100]))
    with pytest.raises(
        hf.CheckpointError,
        match=r"model\.safetensors: tensor 'model\.layers\.1\.mlp"
        r"\.up_proj\.weight' has shape \[100, 64\], "
        r"config\.json implies \[128, 64\]",
    ):
        hf.load_pretrained(d)


def test_missing_tensor(tiny_models, tmp_path):
    d = _copy(tiny_models("llama"), tmp_path / "m")
    _rewrite(d / "model.safetensors", lambda t: t.pop("model.layers.0.self_attn.k_proj.weight"))
    with pytest.raises(
        hf.CheckpointError,
        match=r"tensor 'model\.layers\.0\.self_attn\.k_proj"
        r"\.weight' is missing",
    ):
        hf.load_pretrained(d)


def test_truncated_safetensors(tiny_models, tmp_path):
    d = _copy(tiny_models("llama"), tmp_path / "m")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(hf.CheckpointError, match=r"model\.safetensors: truncated: tensor '.+' needs"):
        hf.load_pretrained(d)
    (d / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(hf.CheckpointError, match="truncated safetensors file"):
        hf.load_pretrained(d)


def test_index_naming_an_absent_shard(tmp_path):
    d = save_tiny_model("llama", tmp_path / "m", max_shard_size="50KB")
    shard = sorted(d.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(hf.CheckpointError, match=rf"lists {shard.name}"):
        hf.load_pretrained(d)


def test_config_fields_are_checked():
    with pytest.raises(ConfigError, match="'hidden_size' must be an integer"):
        model.ModelConfig.from_hf_dict({**TINY, "model_type": "llama", "hidden_size": None})
    with pytest.raises(ConfigError, match="rope scaling type 'yarn'"):
        model.ModelConfig.from_hf_dict(
            {**TINY, "model_type": "llama", "rope_scaling": {"type": "yarn", "factor": 2.0}}
        )


def _random_checkpoint(directory, hf_config: dict, dtype) -> model.ModelConfig:
    """An HF directory of random weights written straight with our writer (no transformers)."""
    from clarify_jax.hf.names import get_path, tensor_maps

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config))
    cfg = model.ModelConfig.from_hf_dict(hf_config)
    shapes = model.param_shapes(cfg)
    specs = {}
    for m in tensor_maps(cfg):
        leaf = get_path(shapes, m.path).shape
        for name in m.hf_names(cfg):
            specs[name] = m.hf_shape(leaf[1:] if m.per_layer else leaf)
    rng = np.random.default_rng(0)
    write_safetensors(
        directory / "model.safetensors",
        [(n, s, dtype) for n, s in specs.items()],
        lambda n: rng.standard_normal(specs[n], np.float32).astype(dtype),
    )
    return cfg


LOAD_AND_REPORT_PEAK = """
import re, sys, jax
from clarify_jax import hf

def kib(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

jax.numpy.zeros(1).block_until_ready()
open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from the current RSS
before = kib("VmRSS")
cfg, params = hf.load_pretrained(sys.argv[1], dtype="float32")
print((kib("VmHWM") - before) * 1024)
"""


@pytest.mark.slow
def test_loading_streams_so_peak_memory_is_near_one_copy(tmp_path):
    """bf16 file -> float32 params of 232 MB. Streaming holds the params plus, while one stacked
    tensor is converted, that tensor twice (host array and its device copy); a loader that reads
    everything before converting needs about twice the params and fails this bound."""
    import subprocess
    import sys

    cfg = _random_checkpoint(
        tmp_path / "m",
        {
            "model_type": "llama",
            "vocab_size": 32000,
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
        },
        jax.numpy.bfloat16,
    )
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_REPORT_PEAK, str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env={**os.environ, "XLA_FLAGS": ""},
    )
    assert out.returncode == 0, out.stderr
    largest = max(leaf.size for leaf in jax.tree.leaves(model.param_shapes(cfg))) * 4
    assert int(out.stdout.split()[-1]) <= cfg.num_params * 4 + 2 * largest + 32 * 2**20
