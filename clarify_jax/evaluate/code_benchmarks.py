"""HumanEval and MBPP as chat benchmarks: n samples per problem, each tested with the problem's
own tests (HumanEval's `check(entry_point)`, MBPP's asserts), scored by pass@k."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from clarify_jax.backends.base import Message
from clarify_jax.data.problem import Problem
from clarify_jax.evaluate.humanevalcomm import Batch, checked_replies, extract_code, test_code
from clarify_jax.sandbox import Limits

CODEGEN_INSTRUCTION = (
    "Solve the following problem in Python3. Reply with the complete code (imports and "
    "function definitions) in one markdown code block.\n\n"
)


@dataclasses.dataclass(frozen=True)
class SampleItem:
    """Sample number `sample` of one problem."""

    id: str
    problem_id: str
    sample: int
    prompt: str
    tests: tuple[str, ...]
    test_setup: str


def sample_items(problems: Sequence[Problem], n_samples: int) -> list[SampleItem]:
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    items = []
    for problem in problems:
        if not problem.tests:
            raise ValueError(f"{problem.id}: no tests to score samples with")
        items.extend(
            SampleItem(
                id=f"{problem.id}#{j}",
                problem_id=problem.id,
                sample=j,
                prompt=problem.prompt,
                tests=problem.tests,
                test_setup=problem.test_setup,
            )
            for j in range(n_samples)
        )
    return items


def codegen_messages(prompt: str) -> list[Message]:
    return [{"role": "user", "content": CODEGEN_INSTRUCTION + prompt}]


def run_samples(
    items: Sequence[SampleItem], model: Batch, evaluator: Batch | None = None, whole_if_unfenced: bool = True
) -> list[dict]:
    """One chat per item (the same prompt for every sample of a problem: sampling tells them
    apart); records without test results. `evaluator` is unused (the runner's signature)."""
    chats = [codegen_messages(item.prompt) for item in items]
    replies = checked_replies(model(chats), len(chats), "model")
    return [
        {
            "id": item.id,
            "problem_id": item.problem_id,
            "sample": item.sample,
            "messages": chat,
            "response": reply,
            "final_code": extract_code(reply, whole_if_unfenced),
        }
        for item, chat, reply in zip(items, chats, replies)
    ]


def score_sample(record: dict, item: SampleItem, limits: Limits = Limits()) -> dict:
    # The setup (MBPP's imports) after the code, as the reference checks run it.
    program = record["final_code"] + ("\n\n" + item.test_setup if item.test_setup else "")
    return test_code(record, program, item.tests, limits)
