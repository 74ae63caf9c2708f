"""HumanEvalComm's own test harness, reproduced: how its scripts turn a solution into test results.

From jie-jw-wu/human-eval-comm, intermedia_analyze.py (`solution_evaluation_HumanEval`, the same at
commit 87c66711 and at HEAD e05111b3), for each solution and the problem's `test_case` entries:
- the solution text is edited first: every `candidate(` becomes `<entry point>(` (the modified
  prompts rename the function `candidate`), every `print(` becomes `# print(`;
- it is written to demo.py; each test is its own `python call_demo.py` process with a 3 s
  timeout (interpreter start and the import of demo.py included):
  - relation "==": `from demo import f` / `print(f(<input>))`; passed when the stripped stdout
    equals the stripped expected `output`;
  - a relation with `$input$` or `$demo$` (all of HumanEval/32's): the script is written but never
    run, and the test is not counted at all;
  - any other relation (an expression over `candidate`): `print(<relation>)` with `candidate`
    replaced by the entry point; passed when stdout is "True";
  - a timeout or an exception: not passed, but counted; a non-zero exit code is compared like
    any other run, so a crash that prints nothing passes a test whose expected output is empty
    (HumanEval/10, 19, 27, 28, 51, 86, 118 and 143 have such tests).
- the test pass rate is passed / counted tests (0 when none was counted: HumanEval/32 always
  scores 0), and Pass@1 is a test pass rate of 1 (measurement_summary_draw_heatmap.py,
  `math.isclose(max(test_pass_rate), 1.0)`). No code ('') runs nothing and scores 0.

Ours differs only where the benchmark's machine shows through: stdin is /dev/null (theirs inherited
the terminal's), the process runs in the sandbox (own uid, no network, rlimits), and this Python
(with this environment's packages) is the `python`.
"""

from __future__ import annotations

from collections.abc import Sequence

from clarify_jax.sandbox import Limits, run_scripts

DEMO, CALL_DEMO = "demo.py", "call_demo.py"
NOT_RUN = "not run"


def prepare_solution(code: str, entry_point: str) -> str:
    """The text written to demo.py."""
    if "candidate(" in code:
        code = code.replace("candidate(", entry_point + "(")
    return code.replace("print(", "# print(")


def test_script(case: Sequence[str], entry_point: str) -> str | None:
    """call_demo.py for one (input, output, relation) case; None for a case the harness never runs."""
    given, _, relation = case
    module = DEMO.split(".")[0]
    if relation == "==":
        return "from %s import %s\nprint(%s(%s))" % (module, entry_point, entry_point, given)
    if "$input$" in relation or "$demo$" in relation:
        return None
    return "from %s import %s\nprint(%s)" % (module, entry_point, relation.replace("candidate", entry_point))


def expected_stdout(case: Sequence[str]) -> str:
    given, output, relation = case
    return output.strip() if relation == "==" else "True"


def run_benchmark_tests(
    code: str, entry_point: str, cases: Sequence[Sequence[str]], limits: Limits = Limits()
) -> dict:
    """{"passed", "total" (counted tests), "statuses" (one per case: passed, failed, error,
    timeout or "not run"), "first_error"} for a solution, as the benchmark's harness scores it."""
    scripts = [test_script(case, entry_point) for case in cases]
    runnable = [i for i, s in enumerate(scripts) if s is not None]
    statuses = [NOT_RUN] * len(cases)
    first_error = ""
    if not code.strip():
        for i in runnable:
            statuses[i] = "no code"
        return {"passed": 0, "total": 0, "statuses": statuses, "first_error": "no code to test"}
    result = run_scripts(
        {DEMO: prepare_solution(code, entry_point)},
        [scripts[i] for i in runnable],
        limits,
        script_name=CALL_DEMO,
    )
    for i, outcome in zip(runnable, result.scripts):
        if outcome.status == "timeout":
            statuses[i] = "timeout"
        elif outcome.status != "ok":
            statuses[i] = "error"
        elif not outcome.truncated and outcome.stdout == expected_stdout(cases[i]):
            statuses[i] = "passed"  # whatever the exit code, as the benchmark compares stdout anyway
        else:
            statuses[i] = "failed" if outcome.returncode == 0 else "error"
        if statuses[i] != "passed" and not first_error:
            detail = (
                f"exit code {outcome.returncode}"
                if statuses[i] == "error" and outcome.status == "ok"
                else f"printed {outcome.stdout[:200]!r}, expected {expected_stdout(cases[i])[:200]!r}"
            )
            first_error = f"{statuses[i]}: test {i}: " + (
                detail if statuses[i] != "timeout" else f"over {limits.timeout_s:g}s"
            )
    passed = statuses.count("passed")
    return {"passed": passed, "total": len(runnable), "statuses": statuses, "first_error": first_error}
