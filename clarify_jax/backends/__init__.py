"""LLM backends behind one small protocol: chat messages in, text out."""

from clarify_jax.backends.base import BackendError, ChatBackend, Message
from clarify_jax.backends.openai_http import OpenAIBackend
from clarify_jax.backends.rules import RulesBackend

__all__ = ["BackendError", "ChatBackend", "Message", "OpenAIBackend", "RulesBackend"]
