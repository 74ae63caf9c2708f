"""Hugging Face checkpoints in and out, and their tokenizers."""

from clarify_jax.hf.pretrained import TOKENIZER_FILES, load_pretrained, save_pretrained
from clarify_jax.hf.safetensors_io import CheckpointError
from clarify_jax.hf.tokenizer import Tokenizer, TokenizerError, load_tokenizer

__all__ = [
    "CheckpointError",
    "TOKENIZER_FILES",
    "Tokenizer",
    "TokenizerError",
    "load_pretrained",
    "load_tokenizer",
    "save_pretrained",
]
