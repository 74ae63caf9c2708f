"""How the next token is chosen from logits: greedy, temperature, top-k, top-p (nucleus)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from clarify_jax.model.layers import NEG_INF


class SamplerError(ValueError):
    """Sampling inputs that cannot work (an empty prompt, one longer than the cache, bad settings)."""


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """What to generate. The defaults decode greedily, as evaluation of pass@1 expects."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    """0 decodes greedily (argmax); above 0 the logits are divided by it before sampling."""
    top_k: int = 0
    """Sample among the k most likely tokens only (0: no limit)."""
    top_p: float = 1.0
    """Sample from the smallest set of most likely tokens whose probability reaches top_p (1: off)."""
    num_samples: int = 1
    """Completions per prompt (pass@k needs k > 1 with temperature > 0)."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion; the text stops before the first one (OpenAI's `stop`)."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end a completion, besides the model's EOS ids."""

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise SamplerError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise SamplerError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SamplerError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplerError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.num_samples < 1:
            raise SamplerError(f"num_samples must be at least 1, got {self.num_samples}")
        if any(not s for s in self.stop):
            raise SamplerError("stop strings must not be empty")


@dataclasses.dataclass(frozen=True)
class TokenChoice:
    """The static part of a SamplingConfig: what changes the compiled graph. Temperature and top_p
    are traced, so changing their values does not recompile."""

    greedy: bool
    top_k: int
    nucleus: bool

    @classmethod
    def of(cls, config: SamplingConfig, vocab_size: int) -> TokenChoice:
        greedy = config.temperature == 0
        return cls(
            greedy=greedy,
            top_k=0 if greedy else min(config.top_k, vocab_size),
            nucleus=not greedy and config.top_p < 1,
        )


def choose_tokens(
    logits: jax.Array, key: jax.Array, temperature: jax.Array, top_p: jax.Array, choice: TokenChoice
) -> jax.Array:
    """Next tokens [B] from logits [B, V] (float32)."""
    if choice.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if not (choice.top_k or choice.nucleus):
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    # top_k returns the candidates sorted by logit, which top-p needs anyway; without a k the sort
    # runs over the whole vocabulary.
    values, indices = jax.lax.top_k(logits, choice.top_k or logits.shape[-1])
    if choice.nucleus:
        probs = jax.nn.softmax(values, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        values = jnp.where(mass_before < top_p, values, NEG_INF)  # the first candidate always stays
    picked = jax.random.categorical(key, values, axis=-1)
    return jnp.take_along_axis(indices, picked[:, None], axis=-1)[:, 0].astype(jnp.int32)
