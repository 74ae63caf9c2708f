"""Inputs for training tests: rules-synthesized dialogues from MBPP problems, a sentencepiece
tokenizer trained on them (as `clarify-jax tokenizer train` does) and a tiny random llama in the
same HF directory."""

from pathlib import Path

import torch
import transformers

from tests.support.hf_models import TINY


def synthesized_data(out: Path, mbpp_file: Path, count: int = 16) -> Path:
    from clarify_jax.backends import RulesBackend
    from clarify_jax.data import sources
    from clarify_jax.data.synthesis import run_synthesis

    problems = list(sources.read_mbpp(mbpp_file))[:count]
    run_synthesis(problems, RulesBackend(), out, progress=False, workers=2)
    return out


def tiny_chat_model(path: Path, corpus: Path, seed: int = 0, **overrides) -> Path:
    """A random llama (vocab 512, hidden 64, 2 layers) plus a tokenizer trained on `corpus`."""
    from clarify_jax.data.tokenizer_training import train_tokenizer
    from clarify_jax.hf.tokenizer import Tokenizer

    train_tokenizer([corpus], path, vocab_size=500)
    tokenizer = Tokenizer(path)
    config = transformers.LlamaConfig(
        **dict(
            TINY, vocab_size=512, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, **overrides
        )
    )
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    return path
