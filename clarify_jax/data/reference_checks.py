"""Run each problem's reference solution against its tests in the sandbox."""

from __future__ import annotations

import concurrent.futures
import os

from tqdm.auto import tqdm

from clarify_jax.data.problem import Problem
from clarify_jax.sandbox import Limits, run_program, run_tests


def _program(problem: Problem) -> str:
    # The setup (e.g. `candidate = entry_point`) needs the solution's definitions first.
    return problem.solutions[0] + ("\n\n" + problem.test_setup if problem.test_setup else "")


def _io_passes(problem: Problem, limits: Limits) -> bool:
    for given, expected in problem.io_tests:
        result = run_program(problem.solutions[0], limits, stdin=given)
        if (
            result.timed_out
            or result.returncode != 0
            or result.stdout.rstrip().split() != expected.rstrip().split()
        ):
            return False
    return True


def _passes(problem: Problem, limits: Limits) -> bool:
    if problem.tests:
        return run_tests(_program(problem), list(problem.tests), limits).all_passed
    return _io_passes(problem, limits)


def check_references(
    problems: list[Problem], timeout_s: float = 3.0, workers: int | None = None, progress: bool = True
) -> dict[str, bool]:
    """problem id -> whether its first reference solution passes all its tests (problems
    without tests or solutions are left out: nothing to check)."""
    limits = Limits(timeout_s=timeout_s)
    todo = [p for p in problems if p.solutions and p.has_tests]
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        outcomes = pool.map(lambda p: _passes(p, limits), todo)  # each a sandboxed process
        return {
            problem.id: ok
            for problem, ok in tqdm(
                zip(todo, outcomes), total=len(todo), disable=not progress, desc="checking references"
            )
        }
