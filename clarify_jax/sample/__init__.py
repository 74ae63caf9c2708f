"""The jitted KV-cache sampler and its token choice (greedy, temperature, top-k, top-p)."""

from clarify_jax.sample.sampler import (
    DEFAULT_BUCKETS,
    Completion,
    DecodeLoop,
    SampleOutput,
    Sampler,
    bucket_length,
    run_loop,
)
from clarify_jax.sample.sampling import SamplerError, SamplingConfig, TokenChoice, choose_tokens

__all__ = [
    "DEFAULT_BUCKETS",
    "Completion",
    "DecodeLoop",
    "SampleOutput",
    "Sampler",
    "SamplerError",
    "SamplingConfig",
    "TokenChoice",
    "bucket_length",
    "choose_tokens",
    "run_loop",
]
