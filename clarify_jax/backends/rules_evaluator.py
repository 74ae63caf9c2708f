"""The rules backend playing HumanEvalComm's evaluator LLM: deterministic grades and answers.

It reads the evaluator prompt (the original problem, the modified one and the model's questions:
each between tags in our own prompt, or in the sections of the benchmark's fixed text) and
measures what the modification changed: the words (crudely stemmed, so
"closer" meets "close") that occur in only one of the two descriptions; when a change only moved
words around (two example results swapped), the words of the changed lines; when it changed only
punctuation (an example output rewritten with other brackets), the changed lines' tokens. Then:
- QUALITY=1 when the reply asks nothing (no question mark);
- QUALITY=3 when the questions mention something the modification changed;
- QUALITY=2 otherwise: questions that cannot recover what was changed (also when nothing was, as
  for an unmodified prompt).
The answers quote the lines of the original that the modification replaced or dropped (the
whole original when no line was), so a model that asked can recover the requirement; grade 1
gets empty answers, as the benchmark's evaluator prompt asks.
"""

from __future__ import annotations

import difflib
import re

from clarify_jax.prompts import EVALUATOR_TEMPLATE

ORIGINAL_TAG, MODIFIED_TAG, QUESTIONS_TAG = "original_problem", "modified_problem", "questions"

# The benchmark's evaluator text around its three fields, in the order they appear.
_HEAD, _AFTER_QUESTIONS, _AFTER_MODIFIED, _TAIL = re.split(
    r"\{clarifying_questions\}|\{problem\}|\{missing_information\}", EVALUATOR_TEMPLATE
)

STOPWORDS = frozenset(
    """
a an the and or of to in on for with by from as at is are be was were been it its this that these those
if else then than so not no yes do does did can could should would will shall may might must have has
had what which who whom whose when where why how all any each every some such only own same other into
over under up down out about more most less least very just also there their them they you your we our
i me my he she his her us return returns returned given list number numbers function def int str float
bool none true false input output value values example examples e g candidate typing import from
""".split()
)


def _tagged(text: str, tag: str, last: bool = False) -> str | None:
    start = text.find(f"<{tag}>")
    end = text.rfind(f"</{tag}>") if last else text.find(f"</{tag}>", start + 1)
    if start < 0 or end < start:
        return None
    return text[start + len(tag) + 2 : end].strip("\n")


def is_evaluator_prompt(text: str) -> bool:
    return (
        all(f"<{tag}>" in text for tag in (ORIGINAL_TAG, MODIFIED_TAG, QUESTIONS_TAG))
        or _benchmark_fields(text) is not None
    )


def _benchmark_fields(text: str) -> tuple[str, str, str] | None:
    """(questions, modified, original) of a prompt in the benchmark's text, None for other text.
    The separators are searched from the right: the questions (a model's reply) come first and
    are the only part that could repeat them."""
    if not (text.startswith(_HEAD) and text.endswith(_TAIL)):
        return None
    body = text[len(_HEAD) : len(text) - len(_TAIL)]
    second = body.rfind(_AFTER_MODIFIED)
    first = body.rfind(_AFTER_QUESTIONS, 0, max(second, 0))
    if first < 0 or second < 0:
        return None
    return body[:first], body[first + len(_AFTER_QUESTIONS) : second], body[second + len(_AFTER_MODIFIED) :]


SUFFIXES = ("ing", "est", "er", "ed", "es", "s", "ly")


def _stem(word: str) -> str:
    """closer, close -> clos; elements -> element; numbers stay as they are."""
    if word[0].isdigit():
        return word
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _words(text: str) -> set[str]:
    """Stemmed lowercase words, identifiers split at underscores and camelCase, numbers kept."""
    words = set()
    for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?", text):
        for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+(?:\.\d+)?", token):
            part = part.lower()
            if part not in STOPWORDS and (len(part) > 1 or part.isdigit()):
                words.add(_stem(part))
    return words


def _tokens(text: str) -> set[str]:
    """Whitespace-separated tokens without trailing sentence punctuation."""
    return {t.rstrip("?.,;:!") for t in text.split()} - {""}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def changed_words(original: str, modified: str) -> tuple[set[str], bool]:
    """What the modification changed, and whether it is whole tokens (punctuation-only changes)
    rather than words: the words in only one description; else the words of the changed lines;
    else those lines' tokens. Empty when the descriptions are the same."""
    only = _words(original) ^ _words(modified)
    if only:
        return only, False
    old, new = _lines(original), _lines(modified)
    changed = "\n".join(
        line
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
        if op != "equal"
        for line in old[i1:i2] + new[j1:j2]
    )
    return (_words(changed), False) if _words(changed) else (_tokens(changed), True)


def replaced_original_lines(original: str, modified: str) -> list[str]:
    """Lines of the original that the modification replaced or removed (blank ones skipped)."""
    old, new = original.splitlines(), [line.strip() for line in modified.splitlines()]
    stripped = [line.strip() for line in old]
    kept = []
    for op, i1, i2, _, _ in difflib.SequenceMatcher(None, stripped, new, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            kept.extend(line for line in old[i1:i2] if line.strip() and line.strip() not in ('"""', "'''"))
    return kept


def grade(questions: str, original: str, modified: str) -> int:
    if "?" not in questions:
        return 1
    targets, as_tokens = changed_words(original, modified)
    asked = _tokens(questions) if as_tokens else _words(questions)
    return 3 if asked & targets else 2


def evaluate(questions: str, original: str, modified: str) -> str:
    """The evaluator's reply, in the QUALITY= / ANSWERS= format the benchmark asks for."""
    quality = grade(questions, original, modified)
    if quality == 1:
        return "QUALITY=1\nANSWERS=```\n```"
    lines = replaced_original_lines(original, modified)
    answer = (
        ("The original description says:\n" + "\n".join(lines))
        if lines
        else "The complete original description is:\n" + original.strip("\n")
    )
    return f"QUALITY={quality}\nANSWERS=```\n{answer}\n```"


def answer_evaluator_prompt(text: str) -> str:
    fields = _benchmark_fields(text)
    if fields is not None:
        questions, modified, original = fields
        return evaluate(questions, original, modified)
    original, modified = _tagged(text, ORIGINAL_TAG), _tagged(text, MODIFIED_TAG)
    questions = _tagged(text, QUESTIONS_TAG, last=True)  # last: the reply may quote tags itself
    if original is None or modified is None or questions is None:
        raise ValueError(
            f"an evaluator prompt needs <{ORIGINAL_TAG}>, <{MODIFIED_TAG}> and "
            f"<{QUESTIONS_TAG}> sections, each closed"
        )
    return evaluate(questions, original, modified)
