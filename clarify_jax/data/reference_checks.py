"""Run each problem's reference solution against its tests in the sandbox."""

from __future__ import annotations

import concurrent.futures
import os

from tqdm.auto import tqdm

from clarify_jax.data.problem import Problem
from clarify_jax.evaluate.sandbox import Limits, run_many, run_program


def _program(problem: Problem) -> str:
    # The setup (e.g. `candidate = entry_point`) needs the solution's definitions first.
    return problem.solutions[0] + ("\n\n" + problem.test_setup if problem.test_setup else "")


def _io_passes(problem: Problem, limits: Limits) -> bool:
    for given, expected in problem.io_tests:
        result = run_program(problem.solutions[0], limits, stdin=given)
        if result.timed_out or result.returncode != 0 or \
                result.stdout.rstrip().split() != expected.rstrip().split():
            return False
    return True


def check_references(problems: list[Problem], timeout_s: float = 3.0, workers: int | None = None,
                     progress: bool = True) -> dict[str, bool]:
    """problem id -> whether its first reference solution passes all its tests (problems
    without tests or solutions are left out: nothing to check)."""
    limits = Limits(timeout_s=timeout_s)
    with_tests = [p for p in problems if p.solutions and p.tests]
    results = run_many([(_program(p), list(p.tests)) for p in with_tests], limits, workers)
    checks = {p.id: r.all_passed for p, r in zip(with_tests, results)}
    with_io = [p for p in problems if p.solutions and p.io_tests and not p.tests]
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        outcomes = pool.map(lambda p: _io_passes(p, limits), with_io)
        for problem, ok in tqdm(zip(with_io, outcomes), total=len(with_io), disable=not progress,
                                desc="checking references"):
            checks[problem.id] = ok
    return checks
