"""The backend protocol shared by synthesis and evaluation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


class BackendError(RuntimeError):
    """A backend that could not produce text (after its retries)."""


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that answers a chat. `name` is recorded in the provenance of what it wrote."""

    name: str

    def complete(self, messages: list[Message]) -> str: ...
