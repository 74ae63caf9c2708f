"""`clarify-jax chat`: a terminal conversation with a local model, the confirm-then-code loop of the
paper by hand: the person states a problem, the model asks its clarifying questions (or writes the
code when the problem is clear), the person answers, the model writes the code.

`run_chat` takes its input and output as functions, so tests drive it with a script.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from clarify_jax.backends.base import BackendError, ChatBackend, Message
from clarify_jax.backends.local import LocalBackend, LocalConfig
from clarify_jax.prompts import ASK_OR_CODE_INSTRUCTION

HELP = (
    "Type a programming problem, then answer the model's questions. To paste several lines, put them "
    'between two lines of """.\nCommands: /reset starts a new conversation, /quit (or Ctrl-D) leaves.'
)
BLOCK = '"""'


@dataclasses.dataclass
class ChatConfig:
    """Talk to a local model in the terminal: describe a problem, answer its questions, get the code.
    Commands: /reset starts over, /quit (or Ctrl-D) ends; paste several lines between two \"\"\" lines."""

    model: str
    """A Hugging Face model directory or a `clarify-jax convert` output."""
    max_new_tokens: int = 1024
    temperature: float = 0.0
    """0 decodes greedily."""
    top_p: float = 1.0
    system: str | None = None
    """A system prompt at the start of every conversation (the chat template must accept one)."""
    round1_instruction: bool = False
    """Put HumanEvalComm's round-1 instruction before the first problem, as the paper's training
    format does (use it when the model was trained with it)."""
    mesh: str = "1,-1,1"
    """Sizes of data,fsdp,tensor; -1 takes the remaining devices."""
    dtype: str | None = None
    max_length: int | None = None
    """Prompt plus answer, in tokens (default: the model's max_position_embeddings)."""


def _read_turn(input_fn: Callable[[str], str]) -> str:
    """One turn: a line, or the lines between two \"\"\" lines. EOFError passes through."""
    line = input_fn("you> ")
    if line.strip() != BLOCK:
        return line.strip()
    lines = []
    while (line := input_fn("... ")).strip() != BLOCK:
        lines.append(line)
    return "\n".join(lines).strip()


def run_chat(
    backend: ChatBackend,
    input_fn: Callable[[str], str] = input,
    print_fn: Callable[..., None] = print,
    system: str | None = None,
    instruction: str = "",
) -> list[Message]:
    """Converse until /quit or end of input (Ctrl-D); returns the last conversation. A backend error
    (for example a conversation grown longer than the model's context) or Ctrl-C while the model
    writes drops the turn, so the person can rephrase or /reset. `instruction` is put before the
    first user turn of each conversation."""
    start: list[Message] = [{"role": "system", "content": system}] if system else []
    history = list(start)
    print_fn(HELP)
    while True:
        try:
            text = _read_turn(input_fn)
        except (EOFError, KeyboardInterrupt):
            print_fn("")
            return history
        if not text:
            continue
        if text == "/quit":
            return history
        if text == "/reset":
            history = list(start)
            print_fn("(new conversation)")
            continue
        if text.startswith("/") and "\n" not in text:  # a pasted block may start with a path
            print_fn(f"unknown command {text.split()[0]}\n{HELP}")
            continue
        first = not any(m["role"] == "user" for m in history)
        history.append({"role": "user", "content": (instruction if first else "") + text})
        try:
            reply = backend.complete(history)
        except BackendError as e:
            history.pop()
            print_fn(f"error: {e}\n(/reset starts a new conversation)")
            continue
        except KeyboardInterrupt:  # Ctrl-C while the model writes: drop the turn, keep the session
            history.pop()
            print_fn("(interrupted)")
            continue
        history.append({"role": "assistant", "content": reply})
        print_fn(f"model> {reply}")


def run(config: ChatConfig) -> None:
    """Load the model and chat on the terminal."""
    backend = LocalBackend(
        LocalConfig(
            model=config.model,
            dtype=config.dtype,
            mesh=config.mesh,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            max_length=config.max_length,
            batch_size=1,
        )
    )
    print(f"chatting with {backend.name}")
    run_chat(
        backend,
        system=config.system,
        instruction=ASK_OR_CODE_INSTRUCTION if config.round1_instruction else "",
    )
