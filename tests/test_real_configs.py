"""Shapes and parameter counts of the 7B models users fine-tune, without allocating them."""

import jax
import pytest

from clarify_jax import model

DEEPSEEK_CODER_67B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32256,
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
    "max_position_embeddings": 16384, "rms_norm_eps": 1e-06, "rope_theta": 100000,
    "rope_scaling": {"type": "linear", "factor": 4.0}, "tie_word_embeddings": False,
    "bos_token_id": 32013, "eos_token_id": 32021, "torch_dtype": "bfloat16",
}
CODELLAMA_7B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32016,
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
    "max_position_embeddings": 16384, "rms_norm_eps": 1e-05, "rope_theta": 1000000,
    "rope_scaling": None, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}
QWEN25_CODER_7B_INSTRUCT = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 152064,
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 28,
    "tie_word_embeddings": False, "bos_token_id": 151643, "eos_token_id": 151645,
    "torch_dtype": "bfloat16",
}


@pytest.mark.parametrize("hf_config,published", [
    (DEEPSEEK_CODER_67B_INSTRUCT, 6_740_512_768),
    (CODELLAMA_7B_INSTRUCT, 6_738_546_688),
    (QWEN25_CODER_7B_INSTRUCT, 7_615_616_512),
])
def test_eval_shape_gives_published_parameter_count(hf_config, published):
    cfg = model.ModelConfig.from_hf_dict(hf_config, param_dtype="bfloat16")
    shapes = model.param_shapes(cfg)
    assert model.count_params(shapes) == published
    assert cfg.num_params == published
    assert shapes["layers"]["self_attn"]["k_proj"]["kernel"].shape == (
        cfg.num_layers, cfg.hidden_size, cfg.num_kv_heads, cfg.head_dim)
    assert all(leaf.dtype == jax.numpy.bfloat16 for leaf in jax.tree.leaves(shapes))
    # Every param dimension has a logical axis name.
    axes = model.param_axes(cfg)
    for spec, leaf in zip(jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)),
                          jax.tree.leaves(shapes)):
        assert len(spec) == len(leaf.shape) and all(isinstance(name, str) for name in spec)


def test_deepseek_uses_linear_rope_x4():
    cfg = model.ModelConfig.from_hf_dict(DEEPSEEK_CODER_67B_INSTRUCT)
    assert (cfg.rope_scaling.type, cfg.rope_scaling.factor, cfg.rope_theta) == ("linear", 4.0, 100000.0)
    assert cfg.eos_token_id == 32021 and not cfg.attention_bias
    assert model.ModelConfig.from_hf_dict(QWEN25_CODER_7B_INSTRUCT).attention_bias
