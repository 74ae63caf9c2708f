"""clarify_jax: clarification-aware fine-tuning of code LLMs in JAX (a ClarifyCoder reimplementation)."""

__version__ = "0.1.0"
