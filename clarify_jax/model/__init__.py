"""Pure-functional Flax decoder for Llama / Qwen2 / Mistral code LLMs."""

from clarify_jax.model.config import ConfigError, ModelConfig, RopeScaling
from clarify_jax.model.kv_cache import KVCache
from clarify_jax.model.transformer import (
    Decoder,
    Params,
    count_params,
    forward,
    forward_with_cache,
    init_params,
    param_axes,
    param_shapes,
    unstack_layers,
)

__all__ = [
    "ConfigError",
    "Decoder",
    "KVCache",
    "ModelConfig",
    "Params",
    "RopeScaling",
    "count_params",
    "forward",
    "forward_with_cache",
    "init_params",
    "param_axes",
    "param_shapes",
    "unstack_layers",
]
