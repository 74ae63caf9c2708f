"""The Hugging Face config.json of the 7B models that the `finetune_7b` presets are sized for.

Training reads the real config from `--model`; these copies (the published files' shape fields)
let `scripts/memory_estimate.py` and the tests size the presets and count parameters without a
download. No PRESETS here.
"""

HF_CONFIGS = {
    "deepseek-coder-6.7b-instruct": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32256,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
        "max_position_embeddings": 16384, "rms_norm_eps": 1e-06, "rope_theta": 100000,
        "rope_scaling": {"type": "linear", "factor": 4.0}, "tie_word_embeddings": False,
        "bos_token_id": 32013, "eos_token_id": 32021, "torch_dtype": "bfloat16",
    },
    "CodeLlama-7b-Instruct": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32016,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
        "max_position_embeddings": 16384, "rms_norm_eps": 1e-05, "rope_theta": 1000000,
        "rope_scaling": None, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    },
    "Qwen2.5-Coder-7B-Instruct": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 152064,
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 28,
        "tie_word_embeddings": False, "bos_token_id": 151643, "eos_token_id": 151645,
        "torch_dtype": "bfloat16",
    },
}
