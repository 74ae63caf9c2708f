"""Reference solutions against the tests the readers built, in the sandbox."""

import dataclasses

import pytest

from clarify_jax.data import sources
from clarify_jax.data.reference_checks import check_references

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out


def test_every_humanevalcomm_reference_passes_its_converted_tests(shared_data):
    """The `test_case` relations turned into asserts mean what the benchmark means by them."""
    problems = list(sources.read_humanevalcomm(shared_data / "humanevalcomm" / "HumanEvalComm.jsonl"))
    checks = check_references(problems, progress=False)
    assert len(checks) == 164 and all(checks.values())


def test_every_humaneval_reference_passes_and_a_wrong_one_fails():
    problems = list(sources.read_humaneval())
    wrong = dataclasses.replace(
        problems[0], id="wrong", solutions=(problems[0].prompt + "    return not True\n",)
    )
    checks = check_references(problems + [wrong], progress=False)
    assert sum(checks.values()) == 164 and checks["wrong"] is False


def test_stdin_stdout_problems_compare_printed_output():
    problem = sources.Problem(
        id="apps/x",
        source="apps",
        prompt="Print 2n.",
        solutions=("print(2 * int(input()))",),
        io_tests=(("3\n", "6\n"), ("5\n", "10")),
    )
    off_by_one = dataclasses.replace(problem, id="apps/y", solutions=("print(2 * int(input()) + 1)",))
    assert check_references([problem, off_by_one], progress=False) == {"apps/x": True, "apps/y": False}
