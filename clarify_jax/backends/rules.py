"""A deterministic backend that makes real rewrites without a model, for offline runs and tests.

It answers the synthesis prompts (which carry <task>, <type>, <problem> ... tags):
- incomplete: cut the description to its first words, or else drop the examples, or else the
  sentence with the key condition;
- inconsistent: make an example's expected result contradict the text, or else add a statement
  that conflicts with one of the text (a precise term replaced by its opposite);
- ambiguous: replace precise terms by vague ones (largest -> extreme) or by both readings (largest
  or smallest), or else numbers by "some"; the function gets a neutral name (`candidate`, `solve`, ...);
and writes questions that target exactly what it changed, and answers that restore it.

Given HumanEvalComm's evaluator prompt instead, it grades and answers the questions
(`clarify_jax.backends.rules_evaluator`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from clarify_jax.backends import rules_evaluator
from clarify_jax.backends.base import BackendError, Message
from clarify_jax.pyparse import literal_eval

# (vague word, precise term, its opposite): the rules blur either term into the vague word
# (ambiguous) or swap it for its opposite (inconsistent).
TERM_PAIRS = (
    ("extreme", "largest", "smallest"),
    ("extreme", "maximum", "minimum"),
    ("extreme-length", "longest", "shortest"),
    ("some order", "ascending", "descending"),
    ("some order", "increasing", "decreasing"),
    ("special", "even", "odd"),
    ("particular", "first", "last"),
    ("combination", "sum", "product"),
    ("different case", "uppercase", "lowercase"),
    ("special", "prime", "composite"),
    ("signed", "positive", "negative"),
)
# One way only: their opposites ("smallest", "least") are blurred by another pair or too common.
VAGUE_ONE_WAY = {
    "biggest": ("extreme", ("biggest", "smallest")),
    "greatest": ("extreme", ("greatest", "least")),
}
# Precise term -> (vague replacement, the alternatives a reader cannot tell apart).
VAGUE_TERMS = {term: (vague, (a, b)) for vague, a, b in TERM_PAIRS for term in (a, b)} | VAGUE_ONE_WAY
OPPOSITES = {
    x: y
    for _, a, b in TERM_PAIRS + (("", "greater", "smaller"), ("", "more", "fewer"))
    for x, y in ((a, b), (b, a))
}

CONDITION_WORDS = re.compile(r"\b(if|only|must|should|unless|each|every|not|than|least|most|\d+)\b", re.I)
# An example on one line: `assert f(1) == 2`, `f(1) == 2` or `f(1) => 2`; group 1 is all before
# the expected result, group 2 the result.
RESULT_LINE = re.compile(r"(\s*(?:assert .*==|[A-Za-z_][\w.]*\(.*(?:==|=>))\s*)(.+?)\s*$")
EXAMPLE_HEADERS = re.compile(r"^\s*(your code should pass these tests:|for example:?|examples?:?)\s*$", re.I)


@dataclasses.dataclass
class Change:
    kind: str
    text: str
    removed: list[str] = dataclasses.field(default_factory=list)  # dropped examples or sentences
    replaced: list[tuple[str, str, tuple[str, ...]]] = dataclasses.field(default_factory=list)
    contradicted: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (true, shown)


def _tag(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.S)
    return match.group(1) if match else None


def _example_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of examples: `assert ...` lines, `call == result` and
    `call => result` lines, and `>>>` doctests with output."""
    blocks, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("assert ") or RESULT_LINE.match(lines[i]):
            blocks.append((i, i + 1))
        elif stripped.startswith(">>>"):
            end = i + 1
            while (
                end < len(lines)
                and lines[end].strip()
                and not lines[end].strip().startswith(">>>")
                and not lines[end].strip().startswith('"""')
            ):
                end += 1
            blocks.append((i, end))
            i = end
            continue
        i += 1
    return blocks


def _is_code_line(line: str) -> bool:
    return bool(re.match(r"\s*(def |class |from |import |@|return )", line))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


DANGLING = {
    "a",
    "an",
    "the",
    "of",
    "to",
    "from",
    "in",
    "into",
    "for",
    "with",
    "and",
    "or",
    "by",
    "using",
    "given",
    "on",
    "at",
    "is",
    "are",
    "that",
    "which",
    "if",
    "whether",
    "all",
    "each",
    "every",
}


def _cut_description(lines: list[str], examples: set[int]) -> Change | None:
    """The description cut to its first words, the examples kept: the statement no longer says
    what to compute, as in HumanEvalComm's incomplete prompts ("Return common." for "Return sorted
    unique common elements for two lists.")."""
    quotes = ('"""', "'''")
    described = [
        i
        for i, line in enumerate(lines)
        if i not in examples
        and line.strip()
        and not _is_code_line(line)
        and line.strip() not in quotes
        and not EXAMPLE_HEADERS.match(line)
    ]
    words = " ".join(lines[i].strip().removeprefix('"""').removeprefix("'''") for i in described).split()
    if len(words) < 6:
        return None
    first = lines[described[0]]
    indent = first[: len(first) - len(first.lstrip())]
    opening = next((q + " " for q in quotes if first.strip().startswith(q)), "")
    keep = max(5, len(words) // 2)
    while keep > 3 and words[keep - 1].lower() in DANGLING:  # "find the." -> "find."
        keep -= 1
    shortened = indent + opening + " ".join(words[:keep]).rstrip(",;:.") + "."
    out = [
        shortened if i == described[0] else line
        for i, line in enumerate(lines)
        if i == described[0] or i not in described
    ]
    return Change("incomplete", "\n".join(out), removed=[" ".join(words[keep:])])


def make_incomplete(problem: str) -> Change:
    lines = problem.split("\n")
    blocks = _example_blocks(lines)
    # The description loses its key part, as in HumanEvalComm's incomplete prompts. Dropping the
    # examples is only the fallback for a description too short to cut: a problem that states its
    # task fully without examples is clear (28 of HumanEval's 164 prompts show none).
    cut = _cut_description(lines, {i for start, end in blocks for i in range(start, end)})
    if cut is not None:
        return cut
    if blocks:
        drop = {i for start, end in blocks for i in range(start, end)}
        drop |= {i for i, line in enumerate(lines) if EXAMPLE_HEADERS.match(line)}
        removed = ["\n".join(lines[s:e]) for s, e in blocks]
        kept = [line for i, line in enumerate(lines) if i not in drop]
        return Change("incomplete", "\n".join(kept).rstrip() + "\n", removed=removed)
    for sentence in sorted(_sentences(problem), key=len, reverse=True):
        if CONDITION_WORDS.search(sentence) and not _is_code_line(sentence):
            return Change("incomplete", problem.replace(sentence, "").strip() + "\n", removed=[sentence])
    return Change("incomplete", problem)


def _contradict(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value[::-1] if len(set(value)) > 1 else value + "x"
    if isinstance(value, (list, tuple)):
        flipped = type(value)(reversed(value))
        return flipped if flipped != value else type(value)([*value, value[0] if value else 0])
    if value is None:
        return 0
    return None


def make_inconsistent(problem: str) -> Change:
    lines = problem.split("\n")
    for start, end in _example_blocks(lines):
        if end - start == 1:
            match = RESULT_LINE.match(lines[start])
            if not match:
                continue
            shown_at, expected_text = start, match.group(2)
            rebuild = lambda new: match.group(1) + new  # noqa: E731
        elif end - start >= 2:
            shown_at, expected_text = end - 1, lines[end - 1].strip()
            indent = lines[end - 1][: len(lines[end - 1]) - len(lines[end - 1].lstrip())]
            rebuild = lambda new, indent=indent: indent + new  # noqa: E731
        else:
            continue
        try:
            wrong = _contradict(literal_eval(expected_text))
        except (ValueError, SyntaxError):
            continue
        if wrong is None:
            continue
        true_example = "\n".join(lines[start:end])
        lines[shown_at] = rebuild(repr(wrong))
        return Change(
            "inconsistent", "\n".join(lines), contradicted=[(true_example, "\n".join(lines[start:end]))]
        )
    swapped = _swap_expected_results(lines)
    if swapped:
        return swapped
    for i, line in enumerate(lines):  # `assert check(...)` claims the opposite: `assert not ...`
        match = re.match(r"(\s*)assert (?!not )(.+)$", line)
        if match and "==" not in line:
            shown = f"{match.group(1)}assert not {match.group(2)}"
            return Change(
                "inconsistent", "\n".join(lines[:i] + [shown] + lines[i + 1 :]), contradicted=[(line, shown)]
            )
    words = re.compile(r"\b(" + "|".join(OPPOSITES) + r")\b", re.I)
    for sentence in _sentences(problem):
        match = words.search(sentence)
        if match and not _is_code_line(sentence):
            opposite = OPPOSITES[match.group(1).lower()]
            conflicting = sentence[: match.start()] + opposite + sentence[match.end() :]
            text = problem.rstrip() + f"\nNote: {conflicting.strip()}\n"
            return Change("inconsistent", text, contradicted=[(sentence.strip(), conflicting.strip())])
    return Change("inconsistent", problem)


def _swap_expected_results(lines: list[str]) -> Change | None:
    """Two `assert call == expected` examples with different results trade results, so the
    examples contradict the description (used when no result is a plain literal)."""
    asserts = [(i, m) for i, line in enumerate(lines) if (m := RESULT_LINE.match(line))]
    for (i, a), (j, b) in zip(asserts, asserts[1:]):
        if a.group(2) != b.group(2):
            true = [lines[i], lines[j]]
            lines = list(lines)
            lines[i], lines[j] = a.group(1) + b.group(2), b.group(1) + a.group(2)
            return Change(
                "inconsistent",
                "\n".join(lines),
                contradicted=[("\n".join(true), "\n".join([lines[i], lines[j]]))],
            )
    return None


# Names that say nothing about what a function computes (HumanEvalComm calls its renamed
# functions `candidate`).
NEUTRAL_NAMES = ("candidate", "solve", "func", "compute", "transform", "process")


def _stable_bits(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _neutral_names(problem: str) -> str:
    """The problem with its function renamed to a neutral name, in the signature and the examples: a
    descriptive name (`find_largest`) would settle what the blurred statement leaves open."""
    match = re.search(r"^\s*def (\w+)\(", problem, re.M) or re.search(r"^\s*assert (\w+)\(", problem, re.M)
    if match is None or match.group(1) in NEUTRAL_NAMES:
        return problem
    neutral = NEUTRAL_NAMES[_stable_bits(problem) % len(NEUTRAL_NAMES)]
    return re.sub(rf"\b{re.escape(match.group(1))}\b(?=\()", neutral, problem)


def make_ambiguous(problem: str) -> Change:
    lines = problem.split("\n")
    examples = {i for s, e in _example_blocks(lines) for i in range(s, e)}
    replaced: list[tuple[str, str, tuple[str, ...]]] = []
    pattern = re.compile(r"\b(" + "|".join(VAGUE_TERMS) + r")\b", re.I)
    # Half the problems (a stable choice) name both readings ("largest or smallest") instead of a
    # vague word ("extreme"): HumanEvalComm's ambiguous prompts do both.
    spell_out = _stable_bits(problem) >> 8 & 1

    def vague(match: re.Match) -> str:
        term = match.group(1).lower()
        replacement, alternatives = VAGUE_TERMS[term]
        if spell_out:
            replacement = " or ".join(sorted(alternatives, key=lambda a: _stable_bits(problem + a)))
        if (term, replacement, alternatives) not in replaced:
            replaced.append((term, replacement, alternatives))
        return replacement

    out = [
        line if i in examples or _is_code_line(line) else pattern.sub(vague, line)
        for i, line in enumerate(lines)
    ]
    if not replaced:
        numbers = re.compile(r"\b(\d+)\b")
        for i, line in enumerate(out):
            if i not in examples and not _is_code_line(line) and numbers.search(line):
                number = numbers.search(line).group(1)
                out[i] = numbers.sub("some", line, count=1)
                replaced.append((number, "some", (number,)))
                break
    if not replaced and examples:
        # Nothing precise to blur: without its examples the result's form (type, order) is an
        # unspecified detail, which is ambiguity in the paper's definition.
        change = make_incomplete(problem)
        return Change("ambiguous", _neutral_names(change.text), removed=change.removed)
    return Change("ambiguous", _neutral_names("\n".join(out)), replaced=replaced)


REWRITERS = {"incomplete": make_incomplete, "inconsistent": make_inconsistent, "ambiguous": make_ambiguous}


def questions_for(change: Change) -> str:
    asks = []
    if change.kind == "incomplete":
        if any(block.strip().startswith(("assert", ">>>")) for block in change.removed):
            asks.append("Could you give a few example inputs together with the expected outputs?")
            asks.append("How should edge cases, such as an empty input, be handled?")
        else:
            asks.append(
                "The statement seems to leave out a condition: what exactly must the result "
                "satisfy, and are there limits on the input?"
            )
            asks.append("Could you give an example input with the expected output?")
    elif change.kind == "inconsistent":
        for _, shown in change.contradicted:
            asks.append(f"The description and this part disagree:\n{shown}\nWhich one is correct?")
        asks.append("Should I follow the description or the example where they conflict?")
    else:
        if change.removed:
            asks.append(
                "In what form should the result be returned (for example a list, a tuple "
                "or a set), and in which order?"
            )
            asks.append("Could you show an example call with its expected result?")
        for term, vague, alternatives in change.replaced:
            if len(alternatives) > 1:
                options = " or ".join(f"'{a}'" for a in sorted(alternatives))
                if " or " in vague:  # both readings spelled out
                    asks.append(f"The statement says '{vague}': which one do you mean, {options}?")
                else:
                    asks.append(f"What do you mean by '{vague}': {options}?")
            else:
                asks.append(f"How many exactly do you mean by '{vague}'?")
    return "\n".join(f"{i}. {q}" for i, q in enumerate(asks, 1))


def answers_for(change: Change, original: str) -> str:
    says = []
    if change.kind in ("incomplete", "ambiguous") and change.removed:
        says.append("Here is what the statement left out:\n" + "\n".join(change.removed))
    elif change.kind == "inconsistent":
        for true, _ in change.contradicted:
            says.append(f"The description is right; the correct version is:\n{true}")
    else:
        for term, vague, _ in change.replaced:
            says.append(f"By '{vague}' I mean '{term}'.")
    says.append(f"The complete requirement is:\n{original.strip()}")
    return "\n\n".join(says)


class RulesBackend:
    """Deterministic rewrites, questions and answers, and the HumanEvalComm evaluator's grades;
    no model, no network."""

    name = "rules"

    def complete(self, messages: list[Message]) -> str:
        text = messages[-1]["content"]
        if rules_evaluator.is_evaluator_prompt(text):
            try:
                return rules_evaluator.answer_evaluator_prompt(text)
            except ValueError as e:
                raise BackendError(f"rules evaluator: {e}") from None
        task, kind, problem = _tag(text, "task"), _tag(text, "type"), _tag(text, "problem")
        if task not in ("rewrite", "questions", "answers") or kind not in REWRITERS or problem is None:
            raise BackendError(
                "the rules backend needs a prompt with <task>rewrite|questions|answers</task>, "
                "<type>ambiguous|inconsistent|incomplete</type> and <problem>...</problem>"
            )
        change = REWRITERS[kind](problem)
        if task == "rewrite":
            return f"<rewritten>\n{change.text}\n</rewritten>"
        if task == "questions":
            return questions_for(change)
        return answers_for(change, problem)
