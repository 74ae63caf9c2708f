"""Tiny model configs that several test files build their models from."""

from clarify_jax import model

# A 2-layer llama small enough to differentiate in milliseconds (the loss and remat tests).
TINY_LLAMA = model.ModelConfig(
    "llama",
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
)
