"""A local model behind the backend protocol: chat messages -> the model's chat template -> the sampler.

Synthesis and evaluation can then run on a checkpoint of their own (for example the fine-tuned
model under test) instead of an HTTP endpoint. `complete_many` batches, because an evaluation
sends thousands of prompts and the sampler's cost per step barely grows with the batch.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import jax

from clarify_jax.backends.base import BackendError, Message
from clarify_jax.checkpoints.load import load_model, metadata_dir
from clarify_jax.hf.chat_template import render_text
from clarify_jax.hf.tokenizer import Tokenizer
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.sample.sampler import Completion, Sampler
from clarify_jax.sample.sampling import SamplerError, SamplingConfig


@dataclasses.dataclass
class LocalConfig:
    model: str = ""
    """A Hugging Face model directory, a `clarify-jax convert` output, or a `clarify-jax train` run
    (its latest checkpoint, LoRA merged) or one of its checkpoints/<step> directories."""
    dtype: str | None = None
    """Params and compute dtype (default: float32 for HF directories, the stored dtype for checkpoints)."""
    mesh: str | None = None
    """Sizes of data,fsdp,tensor such as "1,-1,1" to spread the params over all devices (None: one device)."""
    max_new_tokens: int = 1024
    temperature: float = 0.0
    """0 decodes greedily."""
    top_k: int = 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    batch_size: int = 16
    """Conversations per sampler call in complete_many."""
    max_length: int | None = None
    """Prompt plus new tokens; bounds the KV cache (default: the model's max_position_embeddings)."""
    max_total_tokens: tuple[int, ...] = ()
    """Prompt plus reply at most, by round: the first value for a chat with one user turn, the
    second for two, ... (the last repeats); () for no such cap. A reply is cut to the room left
    (at least one token), as transformers' generate(max_length=...) cuts it: HumanEvalComm ran its
    open models with 512 in round 1 and 1024 in round 2."""
    seed: int = 0

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            stop=tuple(self.stop),
        )


def end_of_turn_ids(path: Path, tokenizer: Tokenizer) -> tuple[int, ...]:
    """Ids that end an assistant turn besides config.json's EOS: the tokenizer's EOS (e.g.
    DeepSeek-Coder's <|EOT|>, Qwen's <|im_end|>) and generation_config.json's eos_token_id."""
    ids = [tokenizer.eos_id]
    generation = path / "generation_config.json"
    if generation.exists():
        eos = json.loads(generation.read_text()).get("eos_token_id")
        ids += eos if isinstance(eos, list) else [eos]
    return tuple(i for i in dict.fromkeys(ids) if isinstance(i, int))


def load_sampler(config: LocalConfig) -> Sampler:
    """The model, its tokenizer and its end-of-turn ids, on the configured mesh."""
    if not config.model:
        raise ValueError(
            "the local backend needs a model path (a Hugging Face directory or a "
            "`clarify-jax convert` output)"
        )
    path = Path(config.model)
    sharding = LogicalSharding(make_mesh(config.mesh)) if config.mesh else None
    cfg, params = load_model(path, dtype=config.dtype, sharding=sharding)
    metadata = metadata_dir(path)
    tokenizer = Tokenizer(metadata)
    return Sampler(
        cfg,
        params,
        tokenizer,
        max_length=config.max_length,
        sharding=sharding,
        stop_token_ids=end_of_turn_ids(metadata, tokenizer),
    )


class LocalBackend:
    """ChatBackend over a Sampler. Calls are serialised (one model, one device set), so threads
    of a synthesis run may share it.

    `LocalBackend("ckpt/dir")`, `LocalBackend("ckpt/dir", temperature=0.8, max_new_tokens=512)` (any
    LocalConfig field) or `LocalBackend(LocalConfig(...))`; `from_sampler` wraps a loaded Sampler.
    """

    def __init__(self, model: str | Path | LocalConfig, **options):
        config = model if isinstance(model, LocalConfig) else LocalConfig(model=str(model), **options)
        sampling = config.sampling()
        sampling.validate()
        self._setup(
            load_sampler(config),
            sampling,
            f"local:{config.model}",
            config.batch_size,
            config.seed,
            config.max_total_tokens,
        )

    @classmethod
    def from_sampler(
        cls,
        sampler: Sampler,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        name: str = "local",
        batch_size: int = 16,
        seed: int = 0,
        max_total_tokens: tuple[int, ...] = (),
    ) -> LocalBackend:
        backend = cls.__new__(cls)
        backend._setup(sampler, sampling, name, batch_size, seed, max_total_tokens)
        return backend

    def _setup(
        self,
        sampler: Sampler,
        sampling: SamplingConfig,
        name: str,
        batch_size: int,
        seed: int,
        max_total_tokens: tuple[int, ...] = (),
    ):
        if sampler.tokenizer is None:
            raise ValueError("the sampler needs the tokenizer to turn tokens into text")
        if any(int(n) < 1 for n in max_total_tokens):
            raise ValueError(f"max_total_tokens must be positive, got {max_total_tokens}")
        self.sampler, self.tokenizer, self.sampling = sampler, sampler.tokenizer, sampling
        self.name, self.batch_size = name, batch_size
        self.max_total_tokens = tuple(int(n) for n in max_total_tokens)
        self._key, self._calls, self._lock = jax.random.key(seed), 0, threading.Lock()

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The chat rendered as transformers' apply_chat_template(add_generation_prompt=True) renders
        it; the template writes the BOS itself, so none is added when encoding."""
        text = render_text(messages, self.tokenizer, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def complete(self, messages: list[Message]) -> str:
        return self.complete_many([messages])[0]

    def complete_many(self, conversations: Sequence[list[Message]]) -> list[str]:
        return [samples[0].text for samples in self.sample_many(conversations)]

    def sample_many(self, conversations: Sequence[list[Message]], **overrides) -> list[list[Completion]]:
        """Completions per conversation (`num_samples` of them, e.g. for pass@k). Conversations are
        sorted by length before batching, so that a batch pads to a similar length."""
        sampling = dataclasses.replace(self.sampling, **overrides)
        prompts = [self.prompt_ids(messages) for messages in conversations]
        room = self.sampler.max_length - sampling.max_new_tokens
        for i, prompt in enumerate(prompts):
            if len(prompt) > room:
                raise BackendError(
                    f"{self.name}: conversation {i} renders to {len(prompt)} tokens; with max_new_tokens="
                    f"{sampling.max_new_tokens} at most {room} fit in max_length={self.sampler.max_length}"
                )
        budgets = [
            self.reply_budget(messages, len(prompt), sampling.max_new_tokens)
            for messages, prompt in zip(conversations, prompts)
        ]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # Decoding is causal, so a reply cut to its budget afterwards is the reply generation
            # would have stopped at; the batch decodes to a power of two over its largest budget
            # (few loop shapes to compile), at most max_new_tokens.
            largest = max(budgets[i] for i in batch)
            batch_sampling = dataclasses.replace(
                sampling, max_new_tokens=min(sampling.max_new_tokens, 1 << (largest - 1).bit_length())
            )
            with self._lock:
                rng = jax.random.fold_in(self._key, self._calls)  # new samples on every call
                self._calls += 1
                try:
                    output = self.sampler.sample([prompts[i] for i in batch], batch_sampling, rng=rng)
                except SamplerError as e:
                    raise BackendError(f"{self.name}: {e}") from None
            for i, completions in zip(batch, output.completions):
                results[i] = [self._cut(c, budgets[i]) for c in completions]
        return results

    def reply_budget(self, messages: list[Message], prompt_tokens: int, max_new_tokens: int) -> int:
        """New tokens allowed for this chat: max_new_tokens, or less under max_total_tokens."""
        if not self.max_total_tokens:
            return max_new_tokens
        rounds = sum(m["role"] == "user" for m in messages)
        total = self.max_total_tokens[min(max(rounds, 1), len(self.max_total_tokens)) - 1]
        return max(1, min(max_new_tokens, total - prompt_tokens))

    def _cut(self, completion: Completion, budget: int) -> Completion:
        if len(completion.tokens) <= budget:
            return completion
        tokens = completion.tokens[:budget]
        return dataclasses.replace(
            completion, tokens=tokens, text=self.sampler.decode(tokens), finish_reason="length"
        )
