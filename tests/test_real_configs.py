"""Shapes and parameter counts of the 7B models users fine-tune, without allocating them."""

import importlib.util

import jax
import pytest

from clarify_jax import model
from clarify_jax.train.presets import CONFIGS_DIR

# The published config.json files (shape fields), kept once in configs/models.py for the presets.
_spec = importlib.util.spec_from_file_location("clarify_jax_configs_models", CONFIGS_DIR / "models.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
DEEPSEEK_CODER_67B_INSTRUCT = _models.HF_CONFIGS["deepseek-coder-6.7b-instruct"]
CODELLAMA_7B_INSTRUCT = _models.HF_CONFIGS["CodeLlama-7b-Instruct"]
QWEN25_CODER_7B_INSTRUCT = _models.HF_CONFIGS["Qwen2.5-Coder-7B-Instruct"]


@pytest.mark.parametrize(
    "hf_config,published",
    [
        (DEEPSEEK_CODER_67B_INSTRUCT, 6_740_512_768),
        (CODELLAMA_7B_INSTRUCT, 6_738_546_688),
        (QWEN25_CODER_7B_INSTRUCT, 7_615_616_512),
    ],
)
def test_eval_shape_gives_published_parameter_count(hf_config, published):
    cfg = model.ModelConfig.from_hf_dict(hf_config, param_dtype="bfloat16")
    shapes = model.param_shapes(cfg)
    assert model.count_params(shapes) == published
    assert cfg.num_params == published
    assert shapes["layers"]["self_attn"]["k_proj"]["kernel"].shape == (
        cfg.num_layers,
        cfg.hidden_size,
        cfg.num_kv_heads,
        cfg.head_dim,
    )
    assert all(leaf.dtype == jax.numpy.bfloat16 for leaf in jax.tree.leaves(shapes))
    # Every param dimension has a logical axis name.
    axes = model.param_axes(cfg)
    for spec, leaf in zip(
        jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)),
        jax.tree.leaves(shapes),
    ):
        assert len(spec) == len(leaf.shape) and all(isinstance(name, str) for name in spec)


def test_deepseek_uses_linear_rope_x4():
    cfg = model.ModelConfig.from_hf_dict(DEEPSEEK_CODER_67B_INSTRUCT)
    assert (cfg.rope_scaling.type, cfg.rope_scaling.factor, cfg.rope_theta) == ("linear", 4.0, 100000.0)
    assert cfg.eos_token_id == 32021 and not cfg.attention_bias
    assert model.ModelConfig.from_hf_dict(QWEN25_CODER_7B_INSTRUCT).attention_bias
