"""LLM backends behind one small protocol: chat messages in, text out."""

from clarify_jax.backends.base import BackendError, ChatBackend, Message
from clarify_jax.backends.openai_http import OpenAIBackend
from clarify_jax.backends.rules import RulesBackend
from clarify_jax.backends.spec import BackendSpec, make_backend, parse_spec

__all__ = [
    "BackendError",
    "BackendSpec",
    "ChatBackend",
    "Message",
    "OpenAIBackend",
    "RulesBackend",
    "make_backend",
    "parse_spec",
]
