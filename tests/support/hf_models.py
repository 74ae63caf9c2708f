"""Tiny random transformers models (vocab <= 512, hidden 64, 2 layers) for parity tests."""

from pathlib import Path

import torch
import transformers

TINY = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=2,
)

VARIANTS = {
    "llama": ("LlamaConfig", {}),
    "llama_linear": (
        "LlamaConfig",
        {"rope_scaling": {"type": "linear", "factor": 4.0}, "rope_theta": 100000.0},
    ),
    "llama_llama3": (
        "LlamaConfig",
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            "rope_theta": 500000.0,
        },
    ),
    "qwen2": ("Qwen2Config", {"tie_word_embeddings": False}),
    "qwen2_tied": ("Qwen2Config", {"tie_word_embeddings": True}),
    "mistral": ("MistralConfig", {"sliding_window": 5}),
}


def build_tiny_model(variant: str, seed: int = 0, **overrides):
    config_class, extra = VARIANTS[variant]
    config = getattr(transformers, config_class)(**{**TINY, **extra, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random (not default-initialised) norms and biases, so a wrong mapping of them shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return model.eval()


def save_tiny_model(variant: str, path: Path, max_shard_size: str | None = None) -> Path:
    model = build_tiny_model(variant)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    return Path(path)


def hf_logits(model_dir, tokens, **kwargs):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        return model(torch.as_tensor(tokens), **kwargs).logits.numpy()
