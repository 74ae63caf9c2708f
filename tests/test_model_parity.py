"""Our forward against transformers (PyTorch CPU, eager attention) on tiny random models."""

import jax
import numpy as np
import pytest

from clarify_jax import hf, model
from tests.support.hf_models import VARIANTS, hf_logits

TOKENS = np.random.default_rng(0).integers(0, 256, (2, 12)).astype(np.int32)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_logits_match_transformers(tiny_models, variant):
    path = tiny_models(variant)
    cfg, params = hf.load_pretrained(path)
    ours = np.asarray(model.forward(cfg, params, TOKENS))
    theirs = hf_logits(path, TOKENS)
    assert ours.shape == (2, 12, 256)
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize(
    "variant,override",
    [
        ("llama_linear", {"rope_scaling": model.RopeScaling()}),
        ("llama_llama3", {"rope_scaling": model.RopeScaling()}),
        ("mistral", {"sliding_window": None}),
    ],
)
def test_the_parity_cases_exercise_scaling_and_window(tiny_models, variant, override):
    """Dropping the RoPE scaling or the window changes the logits, so the parity above is not vacuous."""
    path = tiny_models(variant)
    cfg, params = hf.load_pretrained(path, **override)
    assert np.abs(np.asarray(model.forward(cfg, params, TOKENS)) - hf_logits(path, TOKENS)).max() > 1e-3


def test_config_reads_deepseek_style_linear_rope(tiny_models):
    cfg = model.ModelConfig.from_hf_file(tiny_models("llama_linear"))
    assert (cfg.rope_scaling.type, cfg.rope_scaling.factor, cfg.rope_theta) == ("linear", 4.0, 100000.0)
    legacy = {**cfg.to_hf_dict(), "rope_scaling": {"type": "linear", "factor": 4.0}}
    assert model.ModelConfig.from_hf_dict(legacy).rope_scaling == cfg.rope_scaling


@pytest.mark.parametrize("variant", ["llama", "qwen2_tied", "mistral"])
def test_bfloat16_compute_close_to_float32(tiny_models, variant):
    """bf16 keeps 8 mantissa bits (relative step 2**-8); each of the ~10 matmuls on the path rounds
    its inputs, and the errors add like a random walk, so we allow 4 steps of the largest logit."""
    path = tiny_models(variant)
    cfg, params = hf.load_pretrained(path)
    reference = np.asarray(model.forward(cfg, params, TOKENS))
    cfg16, params16 = hf.load_pretrained(path, dtype="bfloat16")
    assert params16["layers"]["mlp"]["up_proj"]["kernel"].dtype == jax.numpy.bfloat16
    low = np.asarray(model.forward(cfg16, params16, TOKENS))
    assert low.dtype == np.float32  # logits accumulate in float32
    tolerance = 4 * 2**-8 * np.abs(reference).max()
    assert np.abs(low - reference).max() <= tolerance
    assert np.abs(low - reference).max() > 0  # really computed in bf16


def test_right_padding_matches_transformers_attention_mask(tiny_models):
    path = tiny_models("qwen2")
    cfg, params = hf.load_pretrained(path)
    lengths = np.array([12, 7])
    attention_mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
    ours = np.asarray(model.forward(cfg, params, TOKENS, segment_ids=attention_mask))
    import torch

    theirs = hf_logits(path, TOKENS, attention_mask=torch.as_tensor(attention_mask))
    valid = attention_mask.astype(bool)
    assert np.abs(ours[valid] - theirs[valid]).max() <= 1e-4


@pytest.mark.parametrize("variant", ["llama_llama3", "mistral"])
def test_long_rows_use_blocked_causal_attention_and_still_match(tiny_models, variant):
    """T=300 spans three query blocks of `causal_attention` (the last one partial)."""
    path = tiny_models(variant)
    tokens = np.random.default_rng(5).integers(0, 256, (1, 300)).astype(np.int32)
    cfg, params = hf.load_pretrained(path)
    assert np.abs(np.asarray(model.forward(cfg, params, tokens)) - hf_logits(path, tokens)).max() <= 1e-4
