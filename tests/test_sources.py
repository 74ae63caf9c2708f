"""Readers of MBPP, HumanEval, HumanEvalComm, APPS and generic JSONL, on the team's copies."""

import collections
import json

import pytest

from clarify_jax.data import sources
from clarify_jax.data.problem import DataError, ReadReport
from clarify_jax.prompts import HUMANEVALCOMM_CATEGORIES
from tests.support.http_servers import file_server


def test_mbpp_full_and_sanitized(shared_data):
    full = list(sources.read_mbpp(shared_data / "mbpp" / "mbpp.jsonl"))
    sanitized = list(sources.read_mbpp(shared_data / "mbpp" / "sanitized-mbpp.json"))
    assert (len(full), len(sanitized)) == (974, 427)
    first = sanitized[0]
    assert (first.id, first.source, first.entry_point) == ("mbpp/2", "mbpp", "similar_elements")
    assert first.tests[0] == "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"
    assert first.prompt.startswith(
        "Write a function to find the shared elements from the given two lists.\n"
        "Your code should pass these tests:\nassert set("
    )
    assert "\r" not in full[0].solutions[0] and full[0].entry_point == "min_cost"


def test_humaneval_file_and_package_copy_agree(shared_data):
    from_file = list(sources.read_humaneval(shared_data / "humaneval" / "HumanEval.jsonl.gz"))
    from_package = list(sources.read_humaneval())
    assert len(from_file) == 164 and from_file == from_package
    p = from_file[0]
    assert (p.id, p.entry_point) == ("HumanEval/0", "has_close_elements")
    assert p.solutions[0].startswith(p.prompt) and p.tests[0].endswith("check(has_close_elements)")


def test_humanevalcomm_variants_and_tests(shared_data):
    problems = list(sources.read_humanevalcomm(shared_data / "humanevalcomm" / "HumanEvalComm.jsonl"))
    assert len(problems) == 164
    counts = {v: sum(v in p.variants for p in problems) for v in HUMANEVALCOMM_CATEGORIES}
    assert counts == {"1a": 164, "1c": 164, "1p": 164, "2ac": 162, "2ap": 74, "2cp": 34, "3acp": 13}
    assert sum(counts.values()) - counts["3acp"] == 762
    first = problems[0]
    assert (
        first.tests[0]
        == "assert str(has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3)).strip() == 'True'"
    )
    assert first.test_setup == "candidate = has_close_elements"
    find_zero = next(p for p in problems if p.id == "HumanEval/32")
    assert (
        find_zero.tests[0].splitlines()[-1]
        == "assert str(math.fabs(poly([-10, -2], solution)) < 1e-4) == 'True'"
    )


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    good = {
        "task_id": 1,
        "text": "Add.",
        "code": "def add(a, b): return a + b",
        "test_list": ["assert add(1, 2) == 3"],
    }
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "task_id": 2, "code": 5}),
                "{not json",
                json.dumps({**good, "task_id": 4}),
            ]
        )
        + "\n"
    )
    with pytest.raises(DataError, match=rf"{path}:2: field 'code': expected str, got int"):
        list(sources.read_mbpp(path))
    report = ReadReport()
    kept = list(sources.read_mbpp(path, lenient=True, report=report))
    assert [p.id for p in kept] == ["mbpp/1", "mbpp/4"]
    assert (report.read, report.skipped) == (2, 2)
    assert report.errors[1].startswith(f"{path}:3: invalid JSON")


def _apps_row(problem_id, io):
    return {
        "problem_id": problem_id,
        "question": "Read n, print 2n.",
        "solutions": json.dumps(["n = int(input())\nprint(2 * n)"]),
        "input_output": json.dumps(io),
    }


def test_apps_jsonl_and_folder_layouts(tmp_path):
    stdin_io = {"inputs": ["3\n", "5\n"], "outputs": ["6\n", "10\n"]}
    call_io = {"fn_name": "double", "inputs": [[3], [5]], "outputs": [[6], [10]]}
    jsonl = tmp_path / "apps.jsonl"
    jsonl.write_text(json.dumps(_apps_row(0, stdin_io)) + "\n" + json.dumps(_apps_row(1, call_io)) + "\n")
    folder = tmp_path / "train"
    for name, io in (("0000", stdin_io), ("0001", call_io)):
        (folder / name).mkdir(parents=True)
        row = _apps_row(name, io)
        (folder / name / "question.txt").write_text(row["question"])
        (folder / name / "solutions.json").write_text(row["solutions"])
        (folder / name / "input_output.json").write_text(row["input_output"])
    for problems in (list(sources.read_apps(jsonl)), list(sources.read_apps(folder))):
        stdin_problem, call_problem = problems
        assert stdin_problem.io_tests == (("3\n", "6\n"), ("5\n", "10\n")) and not stdin_problem.tests
        assert call_problem.tests == (
            "assert _apps_call('double', [3]) == 6",
            "assert _apps_call('double', [5]) == 10",
        )
        assert call_problem.entry_point == "double" and stdin_problem.solutions[0].startswith("n = int")
    (folder / "0001" / "input_output.json").write_text('{"inputs": [1]}')
    with pytest.raises(DataError, match=r"0001: field 'input_output': expected \{inputs"):
        list(sources.read_apps(folder))


def test_generic_jsonl_with_a_field_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps(
            {
                "key": 7,
                "q": "Add two numbers.",
                "ref": "def add(a, b): return a + b",
                "checks": ["assert add(1, 1) == 2"],
            }
        )
        + "\n"
    )
    (problem,) = sources.read_jsonl(path, "id=key,prompt=q,solution=ref,tests=checks", source="mine")
    assert (problem.id, problem.source, problem.prompt, problem.tests) == (
        "7",
        "mine",
        "Add two numbers.",
        ("assert add(1, 1) == 2",),
    )
    with pytest.raises(ValueError, match="field mapping 'answer=ref'"):
        sources.parse_mapping("id=key,answer=ref")
    with pytest.raises(DataError, match=r"mine.jsonl:1: field 'question': missing"):
        list(sources.read_jsonl(path, "id=key,prompt=question"))


def test_download_fetches_once_into_the_cache(shared_data, tmp_path):
    with file_server(shared_data / "mbpp") as base:
        path = sources.download("mbpp", tmp_path / "cache", url=f"{base}/sanitized-mbpp.json")
        assert path.read_bytes() == (shared_data / "mbpp" / "sanitized-mbpp.json").read_bytes()
    # The server is gone: a second call must be served from the cache.
    again = sources.download("mbpp", tmp_path / "cache", url=f"{base}/sanitized-mbpp.json")
    assert again == path and len(list(sources.read_mbpp(again))) == 427


def test_mbpp_docstring_style_reads_like_humaneval(shared_data):
    tests_style = list(sources.read_mbpp(shared_data / "mbpp" / "mbpp.jsonl"))
    doc_style = list(sources.read_mbpp(shared_data / "mbpp" / "mbpp.jsonl", style="docstring"))
    assert [p.id for p in doc_style] == [p.id for p in tests_style]
    assert [p.tests for p in doc_style] == [p.tests for p in tests_style]  # only the prompt changes
    prime = next(p for p in doc_style if p.id == "mbpp/3")
    assert prime.prompt == (
        "import math\n\n\ndef is_not_prime(n):\n"
        '    """ Write a python function to identify non-prime numbers.\n'
        "    >>> is_not_prime(2)\n    False\n    >>> is_not_prime(10)\n    True\n"
        "    >>> is_not_prime(35)\n    True\n"
        '    """\n'
    )
    # The prompt with the reference body is a program that passes the problem's own tests.
    namespace: dict = {}
    body = "    import math\n    return any(n % i == 0 for i in range(2, int(math.sqrt(n)) + 1))\n"
    exec(prime.prompt + body, namespace)
    for test in prime.tests:
        exec(test, namespace)


def test_mbpp_varied_docstrings_show_zero_to_three_examples_in_humaneval_forms(shared_data):
    path = shared_data / "mbpp" / "mbpp.jsonl"
    plain = {p.id: p for p in sources.read_mbpp(path, style="docstring")}
    varied = list(sources.read_mbpp(path, style="docstring-varied"))
    assert [p.id for p in varied] == list(plain) and all(p.tests == plain[p.id].tests for p in varied)
    assert next(p for p in varied if p.id == "mbpp/3").prompt == (
        "import math\n\n\ndef is_not_prime(n):\n"
        '    """ Write a python function to identify non-prime numbers.\n'
        "    is_not_prime(2) => False\n"
        '    """\n'
    )
    forms = collections.Counter()
    for problem in varied:
        doctests, equal, arrow = (problem.prompt.count(f) for f in (">>> ", ") == ", ") => "))
        assert [doctests, equal, arrow].count(0) >= 2  # one form per problem
        shown = doctests + equal + arrow
        forms[">>>" if doctests else "==" if equal else "=>" if arrow else shown] += 1
        # the same task with the same signature, and the shown examples are the first tests
        before = plain[problem.id].prompt.split("    >>> ")[0]
        assert problem.prompt.startswith(before.rstrip("\n")) and shown <= 3
    # HumanEval's own mix: half doctests, a quarter each `==` and `=>`, a sixth with no example
    assert forms[0] == 164 and forms[">>>"] == 429 and forms["=="] == 186 and forms["=>"] == 195


def test_mbpp_docstring_style_falls_back_where_tests_are_not_examples():
    code = "def f(x):\n    return x\n"
    assert sources.docstring_prompt("Echo.", code, ["assert f(1) == 1"], "f") == (
        'def f(x):\n    """ Echo.\n    >>> f(1)\n    1\n    """\n'
    )
    assert sources.docstring_prompt("Echo.", code, ["assert f(1)"], "f") is None  # not call == value
    assert sources.docstring_prompt("Echo.", code, ["assert g(1) == 1"], "g") is None  # no such def
    with pytest.raises(ValueError, match="docstrings"):
        list(sources.read_mbpp("unused.jsonl", style="docstrings"))
