"""A tokenizer's chat template rendered as transformers' `apply_chat_template(tokenize=False)`
renders it: Jinja in a sandboxed environment with the same filters and globals. Tokenizers
without a template get a plain built-in format."""

from __future__ import annotations

import datetime
import json
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clarify_jax.hf.tokenizer import Tokenizer

# For tokenizers without a chat template.
BUILTIN_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}### Assistant:\n{{ message['content'] }}{{ eos_token }}\n"
    "{% else %}### {{ message['role'] | capitalize }}:\n{{ message['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


class RenderError(ValueError):
    """A chat template that fails, or a dialogue it cannot render."""


def _raise(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


_ENVIRONMENT = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
)
_ENVIRONMENT.filters["tojson"] = _tojson
_ENVIRONMENT.globals["raise_exception"] = _raise
_ENVIRONMENT.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)


def render_text(
    messages: list[dict[str, Any]], tokenizer: Tokenizer, add_generation_prompt: bool = False, **extra
) -> str:
    """The chat as text, exactly as transformers' apply_chat_template(tokenize=False) gives it."""
    template = tokenizer.chat_template or BUILTIN_TEMPLATE
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    try:
        return _ENVIRONMENT.from_string(template).render(
            messages=plain,
            add_generation_prompt=add_generation_prompt,
            bos_token=tokenizer.bos_token or "",
            eos_token=tokenizer.eos_token or "",
            pad_token=tokenizer.pad_token,
            unk_token=tokenizer.unk_token,
            **extra,
        )
    except jinja2.exceptions.TemplateError as e:
        raise RenderError(f"{tokenizer.path}: chat template failed: {e}") from None
