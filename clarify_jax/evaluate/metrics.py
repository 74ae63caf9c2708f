"""Benchmark metrics as pure functions over result records (the runner's JSONL lines).

HumanEvalComm, as the benchmark's scripts compute them, per item (one prompt of one problem):
- Communication Rate: share of items whose round-1 reply holds no fenced code block
  (`communicated`; the protocol's `unclosed_fence` says whether a block cut off counts);
- Good Question Rate: share of items the evaluator graded 3. The denominator is every item of the
  group, code replies included (they have no grade), as the benchmark's scripts count it, not
  only the items that asked: a model that never asks scores 0, not "undefined";
- Pass@1: share of items whose final code passes every test;
- Test Pass Rate: mean over items of the share of tests passed (0 for no code).
"overall" pools the items of every modified category that was run; the unmodified prompts
("original") are reported apart, like the HumanEval columns of the published table.

HumanEval / MBPP: pass@k with the unbiased estimator of Chen et al. (2021), averaged over problems.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from clarify_jax.evaluate.humanevalcomm import CATEGORIES, ORIGINAL


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _asked(record: dict) -> bool:
    """The item went to the evaluator (records written before `asked` existed: its reply was not code)."""
    return bool(record.get("asked", not record["round1_is_code"]))


def comm_group(records: Sequence[dict]) -> dict:
    """The four metrics (fractions in [0, 1], None for an empty group) plus diagnostics: how many
    items went to the evaluator (`asked_rate`) and how many of its replies had no readable grade."""
    asked = [r for r in records if _asked(r)]
    return {
        "items": len(records),
        "communication_rate": _mean([float(r["communicated"]) for r in records]),
        "good_question_rate": _mean([float(r["question_quality"] == 3) for r in records]),
        "pass@1": _mean([float(r["passed"]) for r in records]),
        "test_pass_rate": _mean([r["test_pass_rate"] for r in records]),
        "asked_rate": _mean([float(_asked(r)) for r in records]),
        "evaluator_unparsed": sum(r["question_quality"] is None for r in asked),
    }


def humanevalcomm_metrics(records: Iterable[dict]) -> dict:
    """{"overall": ..., "categories": {category: ...}, "original": ... or None}; categories with
    no item are left out."""
    by_category: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_category[record["category"]].append(record)
    unknown = set(by_category) - {ORIGINAL, *CATEGORIES}
    if unknown:
        raise ValueError(f"records with unknown categories: {sorted(unknown)}")
    modified = [r for c in CATEGORIES for r in by_category.get(c, [])]
    return {
        "overall": comm_group(modified),
        "categories": {c: comm_group(by_category[c]) for c in CATEGORIES if c in by_category},
        "original": comm_group(by_category[ORIGINAL]) if ORIGINAL in by_category else None,
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that at least one of k samples drawn without
    replacement from n, c of them correct, is correct. As a product, so large n cannot overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    remaining = 1.0
    for i in range(n - c + 1, n + 1):
        remaining *= 1.0 - k / i
    return 1.0 - remaining


def pass_at_k_metrics(records: Iterable[dict], ks: Sequence[int]) -> dict:
    """Mean pass@k over problems for each k (None where some problem has fewer than k samples),
    with the problem and sample counts and the mean test pass rate of all samples."""
    per_problem: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        per_problem[record["problem_id"]].append(record)
    counts = [(len(rs), sum(bool(r["passed"]) for r in rs)) for rs in per_problem.values()]
    result: dict = {
        "problems": len(counts),
        "samples": sum(n for n, _ in counts),
        "test_pass_rate": _mean([r["test_pass_rate"] for rs in per_problem.values() for r in rs]),
    }
    for k in ks:
        usable = counts and all(n >= k for n, _ in counts)
        result[f"pass@{k}"] = _mean([pass_at_k(n, c, k) for n, c in counts]) if usable else None
    return result
