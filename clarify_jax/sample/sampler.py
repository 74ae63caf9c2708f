"""The batched sampler: prompts right-padded to a few length buckets, one jitted prefill, then one
`lax.while_loop` of decode steps over the KV cache; stop ids end rows on the device, stop strings
are applied on the host.

Layout of a call. Every prompt but its last token is prefilled into the cache (slots 0..T-1, T a
bucket length, padding stored as empty slots); the logits of that prefill are never used, so XLA
drops the LM head over all T positions. Each loop step then feeds one token per row at the
shared slot T + step and the row's own position, and samples the next one: step 0 feeds the
prompt's last token, so the first new token comes out of the same loop body as all the others.
With n samples per prompt the prefilled cache is repeated n times instead of prefilling n copies.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Sequence
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from clarify_jax.model.config import ModelConfig
from clarify_jax.model.kv_cache import KVCache
from clarify_jax.model.transformer import Params, forward_with_cache, unstack_layers
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.sample.sampling import SamplerError, SamplingConfig, TokenChoice, choose_tokens

# Prefill lengths 32 .. 32768: powers of two and the midpoints 1.5 x 2^i between them. The cache is
# bucket + max_new_tokens wide and every decode step attends over all of it, so padding a 300-token
# prompt to 384 instead of 512 saves about a quarter of both prefill and decode attention; each
# bucket costs one more compile, a few seconds.
DEFAULT_BUCKETS = tuple(sorted({2**i for i in range(5, 16)} | {3 * 2**i for i in range(4, 14)}))
STOP_ID_SLOTS = 8  # stop ids are padded to a multiple of this, so their number rarely recompiles
EMPTY = -1  # output slots after a row finished (and the padding of the stop-id array)


@flax.struct.dataclass
class Prompts:
    """A batch of prompts as the loop takes them (R rows, R a power of two)."""

    prefix: jax.Array  # [R, T] each prompt without its last token, right-padded to a bucket T
    last: jax.Array  # [R] the prompts' last tokens
    lengths: jax.Array  # [R] prompt lengths
    active: jax.Array  # [R] False for rows that only pad the batch

    @classmethod
    def pack(cls, prompts: list[list[int]], width: int) -> Prompts:
        rows = 1 << (len(prompts) - 1).bit_length()  # a power of two: few shapes, divisible meshes
        prefix = np.zeros((rows, width), np.int32)
        last, lengths = np.zeros(rows, np.int32), np.ones(rows, np.int32)
        for i, p in enumerate(prompts):
            prefix[i, : len(p) - 1], last[i], lengths[i] = p[:-1], p[-1], len(p)
        return cls(prefix, last, lengths, np.arange(rows) < len(prompts))


@flax.struct.dataclass
class Knobs:
    """Per-call sampling values that are traced, so changing them never recompiles."""

    stop_ids: jax.Array  # [S] ids that end a row, padded with EMPTY to a multiple of STOP_ID_SLOTS
    key: jax.Array  # PRNG key; step i samples with fold_in(key, i)
    temperature: jax.Array  # f32 scalar
    top_p: jax.Array  # f32 scalar

    @classmethod
    def of(cls, config: SamplingConfig, stop_ids: tuple[int, ...], key: jax.Array) -> Knobs:
        padded = np.full(-(-max(len(stop_ids), 1) // STOP_ID_SLOTS) * STOP_ID_SLOTS, EMPTY, np.int32)
        padded[: len(stop_ids)] = stop_ids
        return cls(padded, key, np.float32(config.temperature or 1.0), np.float32(config.top_p))


@flax.struct.dataclass
class DecodeState:
    """The while_loop carry."""

    step: jax.Array  # output column written next
    last: jax.Array  # [R] token fed at this step
    lengths: jax.Array  # [R] prompt lengths (a row's position at step s is lengths - 1 + s)
    done: jax.Array  # [R] the row produced a stop id (or is batch padding)
    output: jax.Array  # [R, max_new_tokens] sampled ids; EMPTY after a row is done
    cache: KVCache


@dataclasses.dataclass(frozen=True)
class Completion:
    tokens: list[int]
    """Generated ids, without the stop id; after a stop string, up to the token that completed it."""
    text: str | None
    """Decoded tokens, cut before the first stop string (None when the sampler has no tokenizer)."""
    finish_reason: str  # "eos" (a stop id), "stop" (a stop string) or "length" (max_new_tokens)


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    completions: list[list[Completion]]  # [prompt][sample]
    steps: int  # decode steps the loop ran

    @property
    def texts(self) -> list[list[str | None]]:
        return [[c.text for c in row] for row in self.completions]

    @property
    def tokens(self) -> list[list[list[int]]]:
        return [[c.tokens for c in row] for row in self.completions]


@dataclasses.dataclass(frozen=True)
class DecodeLoop:
    """Everything that fixes the compiled program: one instance per compile, hashed as jit's static
    argument. `prefill` fills the cache with the prompts, `decode` runs the `lax.while_loop`; `run_loop`
    calls both."""

    cfg: ModelConfig
    choice: TokenChoice
    max_new_tokens: int
    num_samples: int = 1
    cache_dtype: str | None = None
    sharding: LogicalSharding | None = None
    unstack_layers: bool = False  # decode over per-layer copies of the weights and cache (see `Sampler`)

    def prefill(self, params: Params, prompts: Prompts) -> DecodeState:
        """The prompts but their last tokens written into a fresh cache; the loop's first state."""
        rows, width = prompts.prefix.shape
        # A cache as wide as the prompts, so the prefill's attention spans their slots alone (with
        # the new tokens' slots too it took 1.24x as long: 32 prompts of 384, 256 new tokens).
        cache = KVCache.empty(self.cfg, rows, width, self.cache_dtype)
        segments = (jnp.arange(width)[None, :] < (prompts.lengths - 1)[:, None]).astype(jnp.int32)
        _, cache = forward_with_cache(
            self.cfg,
            params,
            prompts.prefix,
            cache.constrain(self.sharding),
            segment_ids=segments,
            sharding=self.sharding,
        )
        cache = cache.with_room(self.max_new_tokens)
        last, lengths, active = prompts.last, prompts.lengths, prompts.active
        if self.num_samples > 1:
            cache = cache.repeat_rows(self.num_samples)
            last, lengths, active = (jnp.repeat(x, self.num_samples) for x in (last, lengths, active))
        return DecodeState(
            step=jnp.int32(0),
            last=last,
            lengths=lengths,
            done=~active,
            output=jnp.full((last.shape[0], self.max_new_tokens), EMPTY, jnp.int32),
            cache=cache.constrain(self.sharding),
        )

    def decode(self, params: Params, knobs: Knobs, state: DecodeState) -> tuple[jax.Array, jax.Array]:
        """Decodes from a prefilled state in one `lax.while_loop`: the sampled ids
        [R * num_samples, max_new_tokens] (row p * num_samples + j is sample j of prompt p; EMPTY
        after a stop id) and the number of steps run."""
        if self.unstack_layers:  # copies made once per call, outside the loop; the prefill scans
            params = unstack_layers(params)
            state = state.replace(cache=state.cache.unstack().constrain(self.sharding))
        state = jax.lax.while_loop(self._unfinished, lambda s: self._step(params, knobs, s), state)
        return state.output, state.step

    def _unfinished(self, s: DecodeState) -> jax.Array:
        return (s.step < self.max_new_tokens) & ~jnp.all(s.done)

    def _step(self, params: Params, knobs: Knobs, s: DecodeState) -> DecodeState:
        logits, cache = forward_with_cache(
            self.cfg,
            params,
            jnp.maximum(s.last, 0)[:, None],
            s.cache,
            positions=(s.lengths - 1 + s.step)[:, None],
            sharding=self.sharding,
        )
        token = choose_tokens(
            logits[:, 0], jax.random.fold_in(knobs.key, s.step), knobs.temperature, knobs.top_p, self.choice
        )
        token = jnp.where(s.done, EMPTY, token)
        return s.replace(
            step=s.step + 1,
            last=token,
            done=s.done | jnp.isin(token, knobs.stop_ids),
            output=jax.lax.dynamic_update_slice(s.output, token[:, None], (0, s.step)),
            cache=cache.constrain(self.sharding),
        )


def _cpu_has_avx512() -> bool | None:
    """Whether this x86 CPU has AVX-512 (Linux's /proc/cpuinfo flags); None elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


# XLA:CPU's YNNPACK fusions (on by default in jaxlib 0.10) decide the CPU options. Measured on
# SmolLM2-135M, 2 cores, each compiled program against the other in one process, same tokens: the
# prefill ran 1.2x (AVX-512) and 1.38x (AVX2 only) faster without them (batch 16), so it never uses
# them on CPU. The decode loop's steps depend on the rows: on AVX-512 they ran 1.17x faster with
# them at batch 16 (609 cache slots; 1.05x at 161); on an AVX2-only CPU 1.15x (batch 8), 1.2-1.27x
# (16, 160 and 640 slots) and 1.19x (32) faster without them, but 1.73x slower without them at
# batch 4 and level at batch 1. So only AVX2-only x86 CPUs decode 8 rows or more without them.
_NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}
_AVX2_ONLY = _cpu_has_avx512() is False
_YNN_HURTS_FROM_ROWS = 8
_prefill = jax.jit(DecodeLoop.prefill, static_argnums=0)
_prefill_on_cpu = jax.jit(DecodeLoop.prefill, static_argnums=0, compiler_options=_NO_YNN)
_decode = jax.jit(DecodeLoop.decode, static_argnums=0)
_decode_without_ynn = jax.jit(DecodeLoop.decode, static_argnums=0, compiler_options=_NO_YNN)


def run_loop(loop: DecodeLoop, params: Params, prompts: Prompts, knobs: Knobs) -> tuple[jax.Array, jax.Array]:
    """Prefills the prompts, then decodes (two jitted calls: each gets its own compiler options).
    Returns `DecodeLoop.decode`'s sampled ids and step count."""
    on_cpu = _on_cpu(params)
    state = (_prefill_on_cpu if on_cpu else _prefill)(loop, params, prompts)
    rows = prompts.prefix.shape[0] * loop.num_samples
    wide_on_avx2 = on_cpu and _AVX2_ONLY and rows >= _YNN_HURTS_FROM_ROWS
    return (_decode_without_ynn if wide_on_avx2 else _decode)(loop, params, knobs, state)


def _on_cpu(params: Params) -> bool:
    return {d.platform for d in jax.tree.leaves(params)[0].devices()} == {"cpu"}


def bucket_length(n: int, buckets: Sequence[int], limit: int) -> int:
    """The smallest bucket that holds n (n itself when none does), at most `limit`, at least 1."""
    fitting = [b for b in buckets if b >= n]
    return max(1, min(min(fitting) if fitting else n, limit))


def _eos_ids(cfg: ModelConfig) -> tuple[int, ...]:
    eos = cfg.eos_token_id
    return () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)


class Sampler:
    """Generates from a model whose params the caller has loaded (and placed, when sharded).

    Shapes compile once per (prefill bucket, padded batch, max_new_tokens, num_samples, greedy /
    top-k / top-p switch); temperature, top_p's value and the seed are traced and never recompile.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        params: Params,
        tokenizer=None,
        *,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        max_length: int | None = None,
        stop_token_ids: Sequence[int] = (),
        sharding: LogicalSharding | None = None,
        cache_dtype: str | None = None,
        skip_special_tokens: bool = True,
        unstack_layers: bool | None = None,
    ):
        """tokenizer: anything with `decode(ids, skip_special_tokens=...)`; without one there is
        no text and no stop strings. max_length: prompt plus new tokens (default: the config's
        max_position_embeddings), which bounds the cache. stop_token_ids: ids that end a
        completion besides the config's EOS, e.g. a chat model's end-of-turn token.
        unstack_layers: decode over per-layer copies of the weights and of the prefilled cache,
        made once per call, instead of the layer scan over the stacked ones (default: on CPU
        only). XLA:CPU's scan copies each layer's weights and cache out of the stacks at every
        decode step; read in place, a SmolLM2-135M step at batch 16 and 640 cache slots took
        107 ms of op time instead of 233 (2 cores), for a longer compile (each layer compiled on
        its own) and a transient second copy of the weights."""
        self.cfg, self.params, self.tokenizer = cfg, params, tokenizer
        self.buckets = tuple(sorted(buckets))
        self.max_length = max_length or cfg.max_position_embeddings
        self.stop_token_ids = tuple(dict.fromkeys(_eos_ids(cfg) + tuple(stop_token_ids)))
        self.sharding, self.cache_dtype = sharding, cache_dtype
        self.skip_special_tokens = skip_special_tokens
        self.unstack_layers = unstack_layers

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        config: SamplingConfig | None = None,
        rng: jax.Array | int | None = None,
        **overrides,
    ) -> SampleOutput:
        """Completions for token-id prompts of any lengths. `overrides` replace fields of `config`
        (e.g. `sample(prompts, max_new_tokens=64, temperature=0.8)`); rng: a PRNG key or a seed
        (default 0), so that a run is reproducible unless the caller varies it."""
        config = dataclasses.replace(config or SamplingConfig(), **overrides)
        config.validate()
        if config.stop and self.tokenizer is None:
            raise SamplerError("stop strings need a tokenizer to decode the tokens")
        prompts = [[int(t) for t in p] for p in prompts]
        if not prompts:
            return SampleOutput([], 0)
        self._check(prompts, config)
        width = bucket_length(
            max(map(len, prompts)) - 1, self.buckets, self.max_length - config.max_new_tokens
        )
        stop_ids = tuple(dict.fromkeys(self.stop_token_ids + tuple(config.stop_token_ids)))
        if rng is None or isinstance(rng, int):
            rng = jax.random.key(rng or 0)
        loop = DecodeLoop(
            self.cfg,
            TokenChoice.of(config, self.cfg.vocab_size),
            config.max_new_tokens,
            config.num_samples,
            self.cache_dtype,
            self.sharding,
            _on_cpu(self.params) if self.unstack_layers is None else self.unstack_layers,
        )
        output, steps = run_loop(
            loop, self.params, Prompts.pack(prompts, width), Knobs.of(config, stop_ids, rng)
        )
        output, n = np.asarray(output), config.num_samples
        completions = [
            [self._finish(output[p * n + j].tolist(), set(stop_ids), config.stop) for j in range(n)]
            for p in range(len(prompts))
        ]
        return SampleOutput(completions, int(steps))

    def _check(self, prompts: list[list[int]], config: SamplingConfig) -> None:
        vocab = self.cfg.vocab_size
        for i, p in enumerate(prompts):
            if not p:
                raise SamplerError(f"prompt {i} is empty: a completion needs at least one token to follow")
            if min(p) < 0 or max(p) >= vocab:
                raise SamplerError(f"prompt {i} has token ids outside the vocabulary [0, {vocab})")
            if len(p) + config.max_new_tokens > self.max_length:
                raise SamplerError(
                    f"prompt {i} has {len(p)} tokens; with max_new_tokens={config.max_new_tokens} it "
                    f"needs {len(p) + config.max_new_tokens} positions, more than max_length="
                    f"{self.max_length} (shorten the prompt, lower max_new_tokens or raise max_length)"
                )

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    # Stop strings are applied here, on the host, after the loop: a string can be produced by
    # many different token sequences and can straddle token boundaries (byte-level BPE pieces,
    # sentencepiece's leading spaces), so only the decoded text decides whether it appeared, and
    # detokenizing inside the jitted loop is not possible. Rows that hit a stop string therefore
    # keep decoding until a stop id or max_new_tokens; keep max_new_tokens close to what the task
    # needs, or add the end-of-turn token to stop_token_ids so the loop can end early.
    def _finish(self, ids: list[int], stop_ids: set[int], stop: tuple[str, ...]) -> Completion:
        cut = next((i for i, t in enumerate(ids) if t in stop_ids or t == EMPTY), None)
        reason = "length" if cut is None else "eos"
        ids = ids if cut is None else ids[:cut]
        if self.tokenizer is None:
            return Completion(ids, None, reason)
        text = self.decode(ids)
        at = _first_stop(text, stop)
        if at is None:
            return Completion(ids, text, reason)
        lo, hi = 1, len(ids)  # the shortest token prefix whose text contains a stop string
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if _first_stop(self.decode(ids[:mid]), stop) is None else (lo, mid)
        return Completion(ids[:lo], text[:at], "stop")


def _first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(found) if found else None
