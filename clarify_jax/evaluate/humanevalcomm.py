"""HumanEvalComm's two-round protocol (Wu & Fard): ask or code, the evaluator LLM, code again.

Round 1: the model gets the round-1 instruction and a (modified) problem. If its reply is code
(the protocol's routing), that code is tested. Otherwise the reply goes, as its
"questions", to an evaluator LLM together with the modified and the original description; the
evaluator grades the questions (QUALITY 3 good, 2 fair, 1 none) and writes ANSWERS. Round 2: the
model sees the dialogue plus the answers and the round-2 instruction, and the first fenced block
of its reply is tested with the problem's tests under the ORIGINAL entry point.

Communication Rate counts, in both protocols as in the benchmark's scripts, the replies that
contain no complete fenced block (an opening fence line, at least one character, a closing fence
line; for an unclosed block see below). Which replies are routed as code is the protocol's
`routing`: the benchmark's scripts take only a reply that, after leading whitespace, opens with a
complete block (what follows the closing fence is ignored), so a reply that puts prose before its
code goes to the evaluator, although it does not count as communicating; the clarify-jax protocol
takes every reply that holds a block, the same rule the Communication Rate counts by, so that each
reply either asks or codes.

A reply that ends inside a block it opened (most often one cut at `--max-tokens` in the middle of
its code) holds no complete block, so the benchmark's scripts count it as asking. The protocol's
`unclosed_fence` decides: "asks" (the benchmark's rule) or "code" (clarify-jax: the reply was
writing code; what it wrote of the block is its code, for routing, the Communication Rate and the
tests alike).

The rest is a `Protocol`: "benchmark" (the default) reproduces the benchmark's scripts (the
evaluator's fixed text and its strict parser, the code-only one-round prompt for the original
problems, its routing, the round-1 code block when round 2 has none, and its test harness,
`benchmark_harness`); "clarify-jax" keeps this project's own choices, each a named option.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Literal

from clarify_jax.backends.base import BackendError, Message
from clarify_jax.backends.rules_evaluator import MODIFIED_TAG, ORIGINAL_TAG, QUESTIONS_TAG
from clarify_jax.data.problem import Problem
from clarify_jax.evaluate.benchmark_harness import run_benchmark_tests
from clarify_jax.prompts import (
    ASK_OR_CODE_INSTRUCTION,
    CODE_ONLY_INSTRUCTION,
    EVALUATOR_TEMPLATE,
    HUMANEVALCOMM_CATEGORIES,
    OPEN_MODEL_TOTAL_TOKENS,
    ORIGINAL,
    ROUND2_INSTRUCTION,
)
from clarify_jax.sandbox import Limits, run_tests

CATEGORIES = HUMANEVALCOMM_CATEGORIES  # ORIGINAL is scored like the benchmark's HumanEval column

ROUND1_INSTRUCTION = ASK_OR_CODE_INSTRUCTION  # both protocols ask the modified problems this way

Batch = Callable[[list[list[Message]]], list[str]]

# ---- fenced code ------------------------------------------------------------------------------

# A block: "```" plus the rest of its line (the info string), a newline, at least one character,
# then a newline and "```". The opening fence may sit anywhere; the first closing one ends it.
_BLOCK = re.compile(r"```[^\n]*\n(.+?)\n```", re.S)
# The code-only rule: optional whitespace, then a block whose closing fence line holds nothing
# but whitespace after the backticks.
_LEADING_BLOCK = re.compile(r"\s*```[^\n]*\n(.+?)\n```[^\S\n]*(?:\n|\Z)", re.S)


# A block opened and never closed: the rest of the text after the fence line, which must hold
# something besides whitespace; a stray fence at its end ("x = 1```") is left out.
_OPEN_BLOCK = re.compile(r"```[^\n]*\n(.*?)\s*(?:```[^\S\n]*)?\Z", re.S)

UnclosedFence = Literal["asks", "code"]


def code_blocks(text: str, unclosed: UnclosedFence = "asks") -> list[str]:
    """The contents of the fenced blocks of `text`, in order. With `unclosed="code"`, a text with
    no complete block that ends inside an opened one gives that partial block."""
    blocks = _BLOCK.findall(text)
    if not blocks and unclosed == "code":
        match = _OPEN_BLOCK.search(text)
        if match and match.group(1).strip():
            blocks = [match.group(1)]
    return blocks


def leading_code_block(response: str, unclosed: UnclosedFence = "asks") -> str | None:
    """The code of a round-1 reply that IS code, None for a reply that asks (or talks first).

    "```python\\ndef f(): ...\\n```" and "\\n  ```\\ncode\\n```  \\n" are code; "Here it is:\\n```..."
    and "What should f return?" are not; text after the closing fence does not matter (as in the
    benchmark's `re.match`, which anchors only the start). With `unclosed="code"`, a reply that
    opens with a block it never closes is code too.
    """
    match = _LEADING_BLOCK.match(response)
    if match:
        return match.group(1)
    if unclosed == "code" and response.lstrip().startswith("```") and not _BLOCK.search(response):
        blocks = code_blocks(response, unclosed)
        return blocks[0] if blocks else None
    return None


def round1_code(response: str, routing: Routing, unclosed: UnclosedFence = "asks") -> str | None:
    """The code of a round-1 reply that is code under `routing`, None for one that goes to the
    evaluator: "Here it is:\n```python\n...\n```" is code under any-block, not under leading-block."""
    if routing == "leading-block":
        return leading_code_block(response, unclosed)
    blocks = code_blocks(response, unclosed)
    return blocks[0] if blocks else None


def has_code_block(response: str, unclosed: UnclosedFence = "asks") -> bool:
    return bool(code_blocks(response, unclosed))


def extract_code(response: str, whole_if_unfenced: bool = True, unclosed: UnclosedFence = "asks") -> str:
    """The code to test from a reply: its first fenced block; without one, the whole reply
    (`whole_if_unfenced`) or "" (the benchmark scripts' choice: such a reply passes no test)."""
    blocks = code_blocks(response, unclosed)
    if blocks:
        return blocks[0]
    return response.strip() if whole_if_unfenced else ""


# ---- the two protocols ------------------------------------------------------------------------

OriginalPrompt = Literal["code-only", "ask-or-code"]
EvaluatorPrompt = Literal["benchmark", "clarify-jax"]
Parsing = Literal["strict", "lenient"]
Routing = Literal["leading-block", "any-block"]
Fallback = Literal["round1-block", "whole-reply", "empty"]
Harness = Literal["benchmark", "clarify-jax"]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Every choice in which a HumanEvalComm run can differ from another, each a named value."""

    name: str
    original_prompt: OriginalPrompt
    """code-only: the unmodified problems get the benchmark's code-only instruction, one round (its
    HumanEval column); ask-or-code: they get the round-1 instruction of the modified ones and the
    same two rounds, which measures how often a model asks about a clear problem."""
    evaluator_prompt: EvaluatorPrompt
    """benchmark: the benchmark's fixed text; clarify-jax: our wording with tagged sections."""
    evaluator_parsing: Parsing
    """strict: the benchmark's regexes (first `QUALITY\\s*=?\\s*(\\d+)`, first ANSWERS=```...```,
    kept raw; anything else reads as no grade and no answers); lenient: `parse_evaluator`."""
    routing: Routing
    """Which round-1 replies are code: leading-block (a reply that opens with a fenced block, the
    benchmark's `re.match`; prose before the code sends the reply to the evaluator) or any-block
    (a reply that holds a fenced block anywhere, its first block tested: the rule the
    Communication Rate counts by)."""
    round2_fallback: Fallback
    """Code tested when the round-2 reply has no fenced block: round1-block (the first fenced block
    of the round-1 reply, as the benchmark's intermedia_analyze.py), whole-reply, or empty."""
    unclosed_fence: UnclosedFence
    """A reply that ends inside a fenced block it opened (cut at --max-tokens in its code): asks
    (no complete block, so it communicates and goes to the evaluator: the benchmark's
    `response_2_code` needs the closing fence) or code (its partial block is its code)."""
    harness: Harness
    """benchmark: `benchmark_harness` (one process per test, `candidate(` renamed textually, prints
    commented out, $input$ relations never run); clarify-jax: the tests as asserts in one sandboxed
    process with a time limit per test, the renamed function aliased, every relation run."""
    evaluator_temperature: float
    """Sampling temperature of an LLM evaluator (the benchmark's: 1.0)."""
    max_total_tokens: tuple[int, ...]
    """Local models: prompt plus reply, by round (the benchmark's open models: 512, then 1024)."""

    def settings(self) -> dict:
        return dataclasses.asdict(self)


PROTOCOLS = {
    "benchmark": Protocol(
        "benchmark",
        original_prompt="code-only",
        evaluator_prompt="benchmark",
        evaluator_parsing="strict",
        routing="leading-block",
        round2_fallback="round1-block",
        unclosed_fence="asks",
        harness="benchmark",
        evaluator_temperature=1.0,
        max_total_tokens=OPEN_MODEL_TOTAL_TOKENS,
    ),
    "clarify-jax": Protocol(
        "clarify-jax",
        original_prompt="ask-or-code",
        evaluator_prompt="clarify-jax",
        evaluator_parsing="lenient",
        routing="any-block",
        round2_fallback="whole-reply",
        unclosed_fence="code",
        harness="clarify-jax",
        evaluator_temperature=0.0,
        max_total_tokens=(),
    ),
}


# ---- the evaluator ----------------------------------------------------------------------------

# Own wording of the benchmark's evaluator prompt: same inputs, same grades, same output format,
# each input between tags (the clarify-jax protocol; the benchmark's text is EVALUATOR_TEMPLATE).
EVALUATOR_PROMPT = f"""\
The original description of a coding problem was modified so that its requirements became \
ambiguous, inconsistent or incomplete. A developer who saw only the modified description replied \
with the clarifying questions below. Compare the original and the modified descriptions, then:

1. Grade the questions with one integer:
   3 = good questions: answering them recovers the requirements that the modification blurred, \
contradicted or removed;
   2 = fair questions: there are questions, but they cannot help recover the modified requirements;
   1 = no questions (for example the reply is code, or unrelated to the problem).
2. Answer the questions so that the developer recovers the requirements of the original \
description: say what the original states that the modified one lacks, blurs or contradicts. \
If there are no questions at all, leave the answers empty.

Reply in exactly this format:
QUALITY=[the integer]
ANSWERS=```[your answers]```

<{ORIGINAL_TAG}>
{{original}}
</{ORIGINAL_TAG}>

<{MODIFIED_TAG}>
{{modified}}
</{MODIFIED_TAG}>

<{QUESTIONS_TAG}>
{{questions}}
</{QUESTIONS_TAG}>
"""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the evaluator's reply says: a grade (None when none could be read), the answers
    ("" when missing) and what was wrong with the reply's format."""

    quality: int | None
    answers: str
    problems: tuple[str, ...] = ()


_LABEL_TAIL = r"[\s*_]*"  # "**QUALITY**: 3", "QUALITY = 3"
_QUALITY = re.compile(r"\bQUALITY" + _LABEL_TAIL + r"[:=]?[\s*]*\[?\s*(\d+)", re.I)
_ANSWERS = re.compile(r"\bANSWERS?" + _LABEL_TAIL + r"(?:[:=][\s*]*|(?=```))", re.I)
_QUALITY_LINE = re.compile(r"^[\s*]*QUALITY\b", re.I | re.M)
_INFO_STRING = re.compile(r"(?:python|py|text|txt|plaintext|markdown|md)[^\S\n]*\n", re.I)


def parse_evaluator(reply: str) -> Verdict:
    """Read QUALITY and ANSWERS in the forms real models write: `QUALITY=3`, `QUALITY= 3`,
    `QUALITY=[3]`, `QUALITY: 3`, `**QUALITY**: 3`; ANSWERS as a fenced block (closed or not) or
    as plain text after `ANSWERS=` / `ANSWERS:` up to a QUALITY line; in either order."""
    problems = []
    quality = None
    match = _QUALITY.search(reply)
    if match is None:
        problems.append("quality missing")
    elif int(match.group(1)) not in (1, 2, 3):
        problems.append(f"quality {match.group(1)} is not 1, 2 or 3")
    else:
        quality = int(match.group(1))
    label = _ANSWERS.search(reply)
    if label is None:
        problems.append("answers missing")
        return Verdict(quality, "", tuple(problems))
    rest = reply[label.end() :]
    if rest.startswith("```"):
        body = rest[3:]
        info = _INFO_STRING.match(body)
        body = body[info.end() :] if info else body
        end = body.find("```")
        if end < 0:
            problems.append("answers fence not closed")
        answers = body if end < 0 else body[:end]
    else:
        end_line = _QUALITY_LINE.search(rest)
        answers = rest[: end_line.start()] if end_line else rest
    return Verdict(quality, answers.strip(), tuple(problems))


# generate_response.py (jie-jw-wu/human-eval-comm, evaluate_clarifying_questions): re.findall with
# these patterns, the first match of each taken; ANSWERS with flags=re.DOTALL.
_STRICT_QUALITY = re.compile(r"QUALITY\s*=?\s*(\d+)")
_STRICT_ANSWERS = re.compile(r"ANSWERS\s*=?\s*```(.+?)```", re.DOTALL)


def parse_evaluator_strict(reply: str) -> Verdict:
    """The benchmark's reading of the evaluator's reply: case-sensitive `QUALITY=3` (or `QUALITY 3`,
    `QUALITY3`) and ANSWERS=```...``` (closed), the answers kept raw. `QUALITY: 3`,
    `**QUALITY**=3` or an unclosed block read as missing, as in the benchmark."""
    problems = []
    quality = _STRICT_QUALITY.search(reply)
    if quality is None:
        problems.append("quality missing")
    elif int(quality.group(1)) not in (1, 2, 3):
        problems.append(f"quality {quality.group(1)} is not 1, 2 or 3")
    answers = _STRICT_ANSWERS.search(reply)
    if answers is None:
        problems.append("answers missing")
    return Verdict(
        int(quality.group(1)) if quality else None, answers.group(1) if answers else "", tuple(problems)
    )


PARSERS: dict[str, Callable[[str], Verdict]] = {"strict": parse_evaluator_strict, "lenient": parse_evaluator}


# ---- messages ---------------------------------------------------------------------------------


def round1_messages(problem_text: str, instruction: str = ROUND1_INSTRUCTION) -> list[Message]:
    return [{"role": "user", "content": instruction + problem_text}]


def evaluator_messages(
    questions: str, modified: str, original: str, prompt: EvaluatorPrompt = "clarify-jax"
) -> list[Message]:
    """The questions are the model's whole round-1 reply, as in the benchmark. The benchmark's
    text gets the three texts as they are; ours strips their outer newlines inside the tags."""
    if prompt == "benchmark":
        content = EVALUATOR_TEMPLATE.format(
            clarifying_questions=questions, problem=modified, missing_information=original
        )
    else:
        content = EVALUATOR_PROMPT.format(
            original=original.strip("\n"), modified=modified.strip("\n"), questions=questions.strip("\n")
        )
    return [{"role": "user", "content": content}]


def round2_messages(round1: list[Message], reply: str, answers: str) -> list[Message]:
    return [
        *round1,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": answers + ROUND2_INSTRUCTION},
    ]


# ---- items ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CommItem:
    """One prompt of one problem: a modified variant (category 1a ... 3acp) or the original."""

    id: str
    problem_id: str
    category: str
    prompt: str
    original: str
    entry_point: str
    tests: tuple[str, ...]
    test_setup: str
    renamed: str | None = None  # the function name the modified prompt uses instead of entry_point
    cases: tuple[tuple[str, str, str], ...] = ()  # the benchmark's (input, output, relation) test cases


_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.M)  # regex: modified prompts need not parse


def renamed_function(modified: str, original: str, entry_point: str) -> str | None:
    """The name a modified prompt gives the entry point (usually `candidate`), or None."""
    defined = _DEF.findall(modified)
    if entry_point in defined:
        return None
    new = [name for name in defined if name not in set(_DEF.findall(original))]
    return new[-1] if new else None


def comm_items(problems: Sequence[Problem], categories: Sequence[str]) -> list[CommItem]:
    """Items in problem order, then in the order of `categories`; a variant a problem lacks
    (2ap, 2cp and 3acp exist for some problems only) is skipped."""
    unknown = [c for c in categories if c not in (ORIGINAL, *CATEGORIES)]
    if unknown:
        raise ValueError(
            f"unknown HumanEvalComm categories {unknown}; known: {ORIGINAL}, {', '.join(CATEGORIES)}"
        )
    items = []
    for problem in problems:
        if not problem.entry_point:
            raise ValueError(f"{problem.id}: HumanEvalComm problems need an entry point")
        for category in categories:
            text = problem.prompt if category == ORIGINAL else problem.variants.get(category)
            if text is None:
                continue
            items.append(
                CommItem(
                    id=f"{problem.id}#{category}",
                    problem_id=problem.id,
                    category=category,
                    prompt=text,
                    original=problem.prompt,
                    entry_point=problem.entry_point,
                    tests=problem.tests,
                    test_setup=problem.test_setup,
                    cases=problem.benchmark_cases,
                    renamed=renamed_function(text, problem.prompt, problem.entry_point),
                )
            )
    return items


# ---- the protocol -----------------------------------------------------------------------------


def run_dialogues(
    items: Sequence[CommItem], model: Batch, evaluator: Batch, protocol: Protocol = PROTOCOLS["clarify-jax"]
) -> list[dict]:
    """Rounds 1 and 2 (with the evaluator between them) for a batch of items; one record each,
    without test results. `model` and `evaluator` map a list of chats to a list of replies. Under
    a code-only protocol the original problems get one round, the code-only instruction."""
    one_round = [protocol.original_prompt == "code-only" and item.category == ORIGINAL for item in items]
    firsts = [
        round1_messages(item.prompt, CODE_ONLY_INSTRUCTION if once else ROUND1_INSTRUCTION)
        for item, once in zip(items, one_round)
    ]
    replies = checked_replies(model(firsts), len(firsts), "model")
    records, asked = [], []
    for index, (item, messages, reply, once) in enumerate(zip(items, firsts, replies, one_round)):
        code = round1_code(reply, protocol.routing, protocol.unclosed_fence)
        records.append(
            {
                "id": item.id,
                "problem_id": item.problem_id,
                "category": item.category,
                "entry_point": item.entry_point,
                "round1_messages": messages,
                "round1_response": reply,
                "round1_is_code": code is not None,
                "communicated": not has_code_block(reply, protocol.unclosed_fence),
                "asked": False,
                "evaluator_messages": None,
                "evaluator_response": None,
                "question_quality": None,
                "evaluator_problems": [],
                "answers": None,
                "round2_messages": None,
                "round2_response": None,
                "code_source": "round1" if code is not None else "round2",
                "final_code": code or "",
            }
        )
        if once:  # the benchmark's HumanEval column: the first fenced block anywhere, no second round
            records[-1].update(
                code_source="round1",
                final_code=code
                if code is not None
                else extract_code(reply, protocol.round2_fallback == "whole-reply", protocol.unclosed_fence),
            )
        elif code is None:
            asked.append(index)
    if not asked:
        return records
    judged = [
        evaluator_messages(replies[i], items[i].prompt, items[i].original, protocol.evaluator_prompt)
        for i in asked
    ]
    verdict_texts = checked_replies(evaluator(judged), len(judged), "evaluator")
    seconds = []
    for i, messages, text in zip(asked, judged, verdict_texts):
        verdict = PARSERS[protocol.evaluator_parsing](text)
        seconds.append(round2_messages(firsts[i], replies[i], verdict.answers))
        records[i].update(
            asked=True,
            evaluator_messages=messages,
            evaluator_response=text,
            question_quality=verdict.quality,
            evaluator_problems=list(verdict.problems),
            answers=verdict.answers,
            round2_messages=seconds[-1],
        )
    for i, reply in zip(asked, checked_replies(model(seconds), len(seconds), "model")):
        code, source = round2_code(reply, replies[i], protocol.round2_fallback, protocol.unclosed_fence)
        records[i].update(round2_response=reply, final_code=code, code_source=source)
    return records


def round2_code(
    reply: str, round1_reply: str, fallback: Fallback, unclosed: UnclosedFence = "asks"
) -> tuple[str, str]:
    """(code, where it came from) of a round-2 reply: its first fenced block, else the fallback."""
    blocks = code_blocks(reply, unclosed)
    if blocks:
        return blocks[0], "round2"
    if fallback == "round1-block":
        first = code_blocks(round1_reply, unclosed)
        return (first[0], "round1-fallback") if first else ("", "round2")
    return (reply.strip(), "round2-whole") if fallback == "whole-reply" else ("", "round2")


def checked_replies(replies: list[str], expected: int, who: str) -> list[str]:
    replies = list(replies)
    if len(replies) != expected or not all(isinstance(r, str) for r in replies):
        raise BackendError(
            f"the {who} backend returned {len(replies)} replies for {expected} chats "
            "(expected one string per chat)"
        )
    return replies


def program_for(code: str, item: CommItem) -> str:
    """The program the tests run against: the code, then (when the code kept the modified
    prompt's function name, e.g. `candidate`) an alias to the original entry point, then the
    problem's setup (`candidate = <entry point>`, which the relations use)."""
    parts = [code]
    aliases = tuple(dict.fromkeys(a for a in (item.renamed, "candidate") if a and a != item.entry_point))
    if aliases:
        parts.append(
            f"if {item.entry_point!r} not in globals():\n"
            f"    for _alias in {aliases!r}:\n"
            f"        if _alias in globals():\n"
            f"            globals()[{item.entry_point!r}] = globals()[_alias]\n"
            f"            break"
        )
    if item.test_setup:
        parts.append(item.test_setup)
    return "\n\n".join(parts)


def score(record: dict, item: CommItem, limits: Limits = Limits(), harness: Harness = "clarify-jax") -> dict:
    """Test the record's final code (under the original entry point) in the sandbox, with our
    harness or the benchmark's."""
    if harness == "benchmark":
        if not item.cases:
            raise ValueError(f"{item.id}: the benchmark's harness needs the problem's test_case entries")
        tests = run_benchmark_tests(record["final_code"], item.entry_point, item.cases, limits)
        return record_tests(record, tests)
    return test_code(record, program_for(record["final_code"], item), item.tests, limits)


def record_tests(record: dict, tests: dict) -> dict:
    """Adds `tests`, `passed` (every counted test passed) and `test_pass_rate` (passed / counted,
    0 when none was counted) to the record."""
    record["tests"] = tests
    record["passed"] = tests["total"] > 0 and tests["passed"] == tests["total"]
    record["test_pass_rate"] = tests["passed"] / tests["total"] if tests["total"] else 0.0
    return record


def test_code(record: dict, program: str, tests: Sequence[str], limits: Limits) -> dict:
    """Adds `tests` (counts, per-test statuses, the first failure), `passed` (every test passed)
    and `test_pass_rate` to the record. Empty code passes nothing and starts no process."""
    if not record["final_code"].strip():
        statuses, passed, first_error = ["no code"] * len(tests), 0, "no code to test"
    else:
        result = run_tests(program, list(tests), limits)
        statuses, passed = [o.status for o in result.tests], result.passed
        failing = next((o for o in result.tests if o.status != "passed"), None)
        first_error = f"{failing.status}: {failing.error_type} {failing.message}".strip() if failing else ""
    total = len(tests)
    record["tests"] = {"passed": passed, "total": total, "statuses": statuses, "first_error": first_error}
    record["passed"] = total > 0 and passed == total
    record["test_pass_rate"] = passed / total if total else 0.0
    return record
