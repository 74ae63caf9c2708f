"""`clarify-jax tokenizer train`: a sentencepiece BPE tokenizer for small models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clarify_jax.data.tokenizer_training import train_tokenizer


@dataclasses.dataclass
class TokenizerTrainConfig:
    """Train a sentencepiece BPE tokenizer on a corpus and write it as a Hugging Face tokenizer
    directory (tokenizer.model, tokenizer_config.json) for small models such as the CPU demo's."""

    corpus: tuple[Path, ...]
    """Text files, or synthesized rows (.jsonl from `synthesize`) whose text fields are used."""
    out: Path
    """Output directory (created)."""
    vocab_size: int = 8000


def run(config: TokenizerTrainConfig) -> None:
    missing = [str(p) for p in config.corpus if not p.exists()]
    if missing:
        raise FileNotFoundError(f"corpus files not found: {', '.join(missing)}")
    print(f"wrote {train_tokenizer(config.corpus, config.out, config.vocab_size)}")
