"""Pure-functional Flax decoder for Llama / Qwen2 / Mistral code LLMs."""

from clarify_jax.model.config import ConfigError, ModelConfig, RopeScaling
from clarify_jax.model.transformer import (
    CACHE_AXES,
    Cache,
    Decoder,
    Params,
    count_params,
    forward,
    forward_with_cache,
    init_cache,
    init_params,
    param_axes,
    param_shapes,
)

__all__ = [
    "CACHE_AXES",
    "Cache",
    "ConfigError",
    "Decoder",
    "ModelConfig",
    "Params",
    "RopeScaling",
    "count_params",
    "forward",
    "forward_with_cache",
    "init_cache",
    "init_params",
    "param_axes",
    "param_shapes",
]
