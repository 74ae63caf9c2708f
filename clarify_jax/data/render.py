"""Dialogues -> token ids plus a per-token loss kind (prompt: no loss, clarify, code).

Two row formats:
- "chat" (ours, the default): the text comes from the tokenizer's own chat template (Jinja,
  rendered as transformers' `apply_chat_template` renders it) or, for tokenizers without one, a
  built-in format. Each assistant turn's content, and the end-of-turn token right after it, is
  marked with the turn's kind; every other token (system, user, role headers) is `prompt`.
- "paper-v4" (the ClarifyCoder paper's code, `tokenize_v4`): plain text, no chat template, the
  paper's instruction, the problem, its clear / clarify prefix and the answer joined with its
  spacing (`clarify_jax.prompts.paper_v4_text`), BOS and EOS around it, and every token trained
  (labels = input ids), all with the row's kind.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

import numpy as np

from clarify_jax.hf.chat_template import RenderError, render_text
from clarify_jax.hf.tokenizer import Tokenizer
from clarify_jax.prompts import ASK_OR_CODE_INSTRUCTION, paper_v4_text

KIND_PROMPT, KIND_CLARIFY, KIND_CODE = 0, 1, 2
KIND_IDS = {"prompt": KIND_PROMPT, "clarify": KIND_CLARIFY, "code": KIND_CODE}

# The paper's best format (facts from ClarifyCoder): the HumanEvalComm round-1 instruction before
# the problem, and a fixed prefix saying whether the problem is clear before the answer.
ROUND1_INSTRUCTION = ASK_OR_CODE_INSTRUCTION  # sic: a space before the newline
CLEAR_PREFIX = (
    "This is a clear problem requiring no clarifications. Let's generate the required Python3 "
    "code directly in markdown.\n"
)
CLARIFY_PREFIX = (
    "I have a few clarifying questions. Please respond with the necessary details so I can assist further.\n"
)

RowFormat = Literal["chat", "paper-v4"]


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    format: RowFormat = "chat"
    """chat: the chat template, loss on the answers (the options below apply); paper-v4: the paper
    code's plain-text rows, loss on every token (its own instruction and prefixes, first exchange
    only: the options below do not apply)."""
    round1_instruction: bool = False
    """Put the HumanEvalComm round-1 instruction before the first user turn's problem."""
    answer_prefix: bool = False
    """Start the first assistant turn with the fixed clear / clarify prefix."""
    first_turn_only: bool = False
    """Keep only the first user turn and the first answer (code, or the clarifying questions),
    not the rest of a confirm-then-code dialogue: single-turn rows, as the paper trains on."""


def apply_options(dialogue: list[dict[str, Any]], options: RenderOptions) -> list[dict[str, Any]]:
    turns = [dict(t) for t in dialogue]
    if options.first_turn_only:
        first_answer = next((i for i, t in enumerate(turns) if t["role"] == "assistant"), len(turns) - 1)
        turns = turns[: first_answer + 1]
    if options.round1_instruction:
        first_user = next(t for t in turns if t["role"] == "user")
        first_user["content"] = ROUND1_INSTRUCTION + first_user["content"]
    if options.answer_prefix:
        first_answer = next((t for t in turns if t["role"] == "assistant"), None)
        if first_answer is not None:
            prefix = CLARIFY_PREFIX if first_answer.get("kind") == "clarify" else CLEAR_PREFIX
            first_answer["content"] = prefix + first_answer["content"]
    return turns


def _assistant_spans(text: str, turns: list[dict[str, Any]], eos: str | None) -> list[tuple[int, int, int]]:
    """(start, end, kind) character spans of each assistant turn's content in the rendered text,
    extended over the end-of-turn token that follows it."""
    spans, cursor = [], 0
    for turn in turns:
        content = turn["content"]
        # Templates may trim the content (CodeLlama's `| trim`): find the trimmed text.
        needle = content if content in text[cursor:] else content.strip()
        at = text.find(needle, cursor)
        if at < 0:
            raise RenderError(f"the chat template dropped or changed a {turn['role']} turn's content")
        end = at + len(needle)
        cursor = end
        if turn["role"] != "assistant":
            continue
        kind = KIND_IDS.get(turn.get("kind", "code"))
        if kind is None:
            raise RenderError(f"assistant turn kind {turn.get('kind')!r}: expected clarify or code")
        if eos:
            closing = re.match(r"\s*" + re.escape(eos), text[end:])
            if closing:
                end += closing.end()
        spans.append((at, end, kind))
        cursor = end
    return spans


def render_dialogue(
    dialogue: list[dict[str, Any]], tokenizer: Tokenizer, options: RenderOptions = RenderOptions()
) -> tuple[np.ndarray, np.ndarray]:
    """(token ids int32 [T], kinds int8 [T]) of a dialogue whose assistant turns carry `kind`."""
    turns = apply_options(dialogue, options)
    text = render_text(turns, tokenizer)
    spans = _assistant_spans(text, turns, tokenizer.eos_token)
    ids, offsets = tokenizer.encode_with_offsets(text)
    kinds = np.zeros(len(ids), np.int8)
    starts = np.array([s for s, _ in offsets])
    ends = np.array([e for _, e in offsets])
    for begin, end, kind in spans:
        # A token belongs to the turn when it starts inside it (a merged leading "\n" stays prompt).
        kinds[(starts >= begin) & (starts < end) & (ends > starts)] = kind
    return np.asarray(ids, np.int32), kinds


def render_paper_v4(row: dict[str, Any], tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """A row as the paper's tokenize_v4 makes it: tokenizer(text) with add_eos_token set, so BOS
    (where the tokenizer adds one) + text + EOS, and labels = input ids. The problem and answer are
    the row's `problem` and `answer` (else its first user and assistant turns); the row is clear
    when its `type` is original (the paper: "Original"), else when its first answer is code."""
    turns = row.get("dialogue") or []
    first_user = next((t["content"] for t in turns if t["role"] == "user"), None)
    first_answer = next((t for t in turns if t["role"] == "assistant"), None)
    problem = row.get("problem", first_user)
    answer = row.get("answer", first_answer["content"] if first_answer else None)
    if not isinstance(problem, str) or not isinstance(answer, str):
        raise RenderError(
            "a paper-v4 row needs a problem and an answer (fields, or a user and an assistant turn)"
        )
    if isinstance(row.get("type"), str):
        clear = row["type"].lower() == "original"
    else:
        clear = first_answer is not None and first_answer.get("kind", "code") == "code"
    ids = tokenizer.encode(paper_v4_text(problem, answer, clear))
    if tokenizer.eos_id is not None and (not ids or ids[-1] != tokenizer.eos_id):
        ids.append(tokenizer.eos_id)
    kinds = np.full(len(ids), KIND_CODE if clear else KIND_CLARIFY, np.int8)
    return np.asarray(ids, np.int32), kinds


@dataclasses.dataclass(frozen=True)
class DialogueRenderer:
    """`row -> (ids, kinds)` over the row's `dialogue`, for the input pipeline (a picklable
    object, so that prefetch worker processes can run it)."""

    tokenizer: Tokenizer
    options: RenderOptions = RenderOptions()

    def __call__(self, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if self.options.format == "paper-v4":
            return render_paper_v4(row, self.tokenizer)
        return render_dialogue(row["dialogue"], self.tokenizer, self.options)
