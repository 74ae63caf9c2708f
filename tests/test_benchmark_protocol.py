"""HumanEvalComm's own protocol (`--protocol benchmark`): its strings, its evaluator parser, the
round-2 fallback, its test harness, the code-only original prompts, the item count, and a whole
run through the evaluate command with the rules evaluator."""

import hashlib
import json

import pytest

from clarify_jax import prompts
from clarify_jax.backends import RulesBackend
from clarify_jax.commands import evaluate as ec
from clarify_jax.data.sources import read_humanevalcomm
from clarify_jax.evaluate import benchmark_harness as bh
from clarify_jax.evaluate import humanevalcomm as hec
from clarify_jax.evaluate.runner import LOG_FILE, read_records
from tests.support.http_servers import ChatServer

FENCE = "```"


@pytest.fixture(scope="module")
def comm_path(shared_data):
    return shared_data / "humanevalcomm" / "HumanEvalComm.jsonl"


@pytest.fixture(scope="module")
def comm_problems(comm_path):
    return {p.id: p for p in read_humanevalcomm(comm_path)}


# SHA-256 of each protocol string as copied from jie-jw-wu/human-eval-comm@87c66711 generate_response.py
# and jie-jw-wu/clarify-coder@2ac7898 tokenize_v4: a guard against edits of facts that are not ours.
PINNED = {
    "ASK_OR_CODE_INSTRUCTION": "e31606fef13d60c4",
    "CODE_ONLY_INSTRUCTION": "6947491c6bd8ac35",
    "EVALUATOR_TEMPLATE": "a2acfb86c4b19534",
    "ROUND2_INSTRUCTION": "bac44e009ad471a2",
    "PAPER_V4_INSTRUCTION": "7fbdf16efd940ed3",
    "PAPER_V4_CLEAR_PREFIX": "45e826a09e1ae660",
    "PAPER_V4_CLARIFY_PREFIX": "9ac26a58c877184d",
}


def test_protocol_strings_are_the_benchmarks_byte_for_byte():
    digests = {name: hashlib.sha256(getattr(prompts, name).encode()).hexdigest()[:16] for name in PINNED}
    assert digests == PINNED
    assert prompts.ASK_OR_CODE_INSTRUCTION.endswith(": \n") and prompts.PAPER_V4_INSTRUCTION.endswith(":\n")
    assert hec.ROUND1_INSTRUCTION == prompts.ASK_OR_CODE_INSTRUCTION  # both protocols ask this way


def test_the_benchmark_evaluator_prompt_gets_the_texts_as_they_are():
    (message,) = hec.evaluator_messages(
        "\nWhich order?\n", "\ndef f(x):\n", "def g(x):\n", prompt="benchmark"
    )
    assert message == {
        "role": "user",
        "content": prompts.EVALUATOR_TEMPLATE.format(
            clarifying_questions="\nWhich order?\n",
            problem="\ndef f(x):\n",
            missing_information="def g(x):\n",
        ),
    }
    assert message["content"].endswith(
        " ### Questions: \nWhich order?\n \n ### Modified Problem "
        "Description: \ndef f(x):\n \n ### Original Description: "
        "def g(x):\n \n"
    )


@pytest.mark.parametrize(
    "reply, strict, lenient",
    [
        # the benchmark's own shapes
        (
            "QUALITY=3\nANSWERS=```The list is sorted.```",
            (3, "The list is sorted."),
            (3, "The list is sorted."),
        ),
        ("QUALITY= 2 \n ANSWERS= ```\n- x is n\n```", (2, "\n- x is n\n"), (2, "- x is n")),
        ("ANSWERS=```a```\nQUALITY=1", (1, "a"), (1, "a")),
        ("QUALITY 3 ANSWERS ```b```", (3, "b"), (3, "b")),
        # off them: the benchmark reads no grade or no answers, the lenient parser does
        ("QUALITY: 3\nANSWERS: ascending", (None, ""), (3, "ascending")),
        ("**QUALITY**=3\nANSWERS=```c```", (None, "c"), (3, "c")),
        ("QUALITY=3\nANSWERS=```cut off here", (3, ""), (3, "cut off here")),
        ("quality=3\nanswers=```d```", (None, ""), (3, "d")),
        ("QUALITY=[your int] QUALITY=3 ANSWERS=```e```", (3, "e"), (3, "e")),
    ],
)
def test_strict_and_lenient_parsers(reply, strict, lenient):
    verdict = hec.parse_evaluator_strict(reply)
    assert (verdict.quality, verdict.answers) == strict
    assert ("quality missing" in verdict.problems) == (strict[0] is None)
    assert (hec.parse_evaluator(reply).quality, hec.parse_evaluator(reply).answers) == lenient


def test_strict_parser_keeps_out_of_range_grades_as_problems():
    verdict = hec.parse_evaluator_strict("QUALITY=0\nANSWERS=```x```")
    assert verdict.quality == 0 and verdict.problems == ("quality 0 is not 1, 2 or 3",)


def test_round2_fallback():
    round1 = f"Do you mean ascending?\n{FENCE}python\ndef f(x):\n    return sorted(x)\n{FENCE}"
    with_block = f"Here:\n{FENCE}python\ndef f(x):\n    return x\n{FENCE}"
    for fallback in ("round1-block", "whole-reply", "empty"):
        assert hec.round2_code(with_block, round1, fallback) == ("def f(x):\n    return x", "round2")
    assert hec.round2_code("def f(x): return x", round1, "round1-block") == (
        "def f(x):\n    return sorted(x)",
        "round1-fallback",
    )
    assert hec.round2_code("def f(x): return x", "no code here", "round1-block") == ("", "round2")
    assert hec.round2_code(" def f(x): return x\n", round1, "whole-reply") == (
        "def f(x): return x",
        "round2-whole",
    )
    assert hec.round2_code("def f(x): return x", round1, "empty") == ("", "round2")


def test_item_count_is_775_modified_and_164_original(comm_problems):
    items = hec.comm_items(list(comm_problems.values()), ec.ALL_CATEGORIES)
    assert len(items) == 939 and sum(i.category != "original" for i in items) == 775
    assert ec.EvaluateConfig().categories == ec.ALL_CATEGORIES


def _score(problem, category, code, harness):
    (item,) = hec.comm_items([problem], (category,))
    return hec.score({"final_code": code}, item, harness=harness)


def test_harness_never_runs_humaneval_32(comm_problems):
    problem = comm_problems["HumanEval/32"]
    ours = _score(problem, "original", problem.solutions[0], "clarify-jax")
    theirs = _score(problem, "original", problem.solutions[0], "benchmark")
    assert ours["passed"] and ours["test_pass_rate"] == 1.0  # we run the $input$ relations
    assert theirs["tests"]["statuses"] == [bh.NOT_RUN] * 100 and theirs["tests"]["total"] == 0
    assert not theirs["passed"] and theirs["test_pass_rate"] == 0.0


def test_harness_on_renamed_entry_points(comm_problems):
    # 1a renames has_close_elements to `candidate`: the benchmark renames calls textually, we alias.
    problem = comm_problems["HumanEval/0"]
    body = problem.solutions[0].split('"""')[-1]
    code = "from typing import List\n\ndef candidate(numbers: List[float], threshold: float) -> bool:" + body
    for harness in ("benchmark", "clarify-jax"):
        record = _score(problem, "1a", code, harness)
        assert record["passed"], (harness, record["tests"])
    # HumanEval/41 1c names the function is_prime: only our alias finds it.
    code = "def is_prime(n: int):\n    return n * n\n"
    assert _score(comm_problems["HumanEval/41"], "1c", code, "clarify-jax")["passed"]
    theirs = _score(comm_problems["HumanEval/41"], "1c", code, "benchmark")
    assert theirs["tests"]["statuses"] == ["error"] * 5 and theirs["test_pass_rate"] == 0.0


def test_benchmark_harness_semantics(comm_problems):
    problem = comm_problems["HumanEval/0"]
    solution = problem.solutions[0]
    noisy = "print('loading')\n" + solution  # prints are commented out, so stdout stays clean
    assert _score(problem, "original", noisy, "benchmark")["passed"]
    assert _score(problem, "original", noisy, "clarify-jax")["passed"]
    # a one-line `if` whose body is a print becomes a syntax error: every test errs, as in the benchmark
    broken = solution + "\nif True: print('x')\n"
    record = _score(problem, "original", broken, "benchmark")
    assert set(record["tests"]["statuses"]) == {"error"} and record["test_pass_rate"] == 0.0
    assert _score(problem, "original", "", "benchmark")["tests"]["total"] == 0
    slow = solution + "\nimport time\ntime.sleep(5)\n"
    (item,) = hec.comm_items([problem], ("original",))
    record = hec.score({"final_code": slow}, item, hec.Limits(timeout_s=0.5), harness="benchmark")
    assert set(record["tests"]["statuses"]) == {"timeout"}
    scripts = [bh.test_script(case, "has_close_elements") for case in problem.benchmark_cases[:1]]
    assert scripts == [
        "from demo import has_close_elements\nprint(has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3))"
    ]
    assert (
        bh.test_script(("x", "", "abs(candidate(1.33) - 0.33) < 1e-6"), "f")
        == "from demo import f\nprint(abs(f(1.33) - 0.33) < 1e-6)"
    )


def test_rules_evaluator_replies_parse_strictly(comm_problems):
    rules = RulesBackend()
    for pid in ("HumanEval/0", "HumanEval/1", "HumanEval/41"):
        problem = comm_problems[pid]
        for category, modified in problem.variants.items():
            for questions in ("What should the function return for an empty list?", "def f(): pass"):
                for prompt in ("benchmark", "clarify-jax"):  # replies read the same under either prompt
                    messages = hec.evaluator_messages(questions, modified, problem.prompt, prompt)
                    reply = rules.complete(messages)
                    verdict = hec.parse_evaluator_strict(reply)
                    assert verdict.problems == () and verdict.quality in (1, 2, 3), (pid, category, reply)
                    assert verdict.quality == hec.parse_evaluator(reply).quality


def fenced(code):
    return f"{FENCE}python\n{code}\n{FENCE}"


def test_a_benchmark_protocol_run(comm_path, comm_problems, tmp_path):
    """Originals: code-only instruction, one round. Modified: asked, graded by the rules evaluator
    through the benchmark's text and strict parser; round 2 without a block falls back to the
    round-1 block."""
    by_text = {}
    for problem in comm_problems.values():
        for text in (problem.prompt, *problem.variants.values()):
            by_text[text] = problem

    def model(messages):
        first = messages[0]["content"]
        if first.startswith(prompts.CODE_ONLY_INSTRUCTION):
            return "Sure:\n" + fenced(by_text[first[len(prompts.CODE_ONLY_INSTRUCTION) :]].solutions[0])
        problem = by_text[first[len(prompts.ASK_OR_CODE_INSTRUCTION) :]]
        if len(messages) == 1:
            return "What should it return?\n" + fenced(problem.solutions[0])  # asks, with a draft
        assert messages[2]["content"].endswith(prompts.ROUND2_INSTRUCTION)
        return "Understood, the draft above stands."  # no block: the round-1 block is tested

    with ChatServer(model) as server:
        summary = ec.evaluate_command(
            ec.EvaluateConfig(
                model=f"openai:m@{server.base_url}",
                data=comm_path,
                out=tmp_path,
                evaluator="rules",
                problems=("HumanEval/0", "HumanEval/2"),
                progress=False,
                concurrency=2,
            )
        )
    records = read_records(tmp_path / LOG_FILE)
    items = hec.comm_items([comm_problems["HumanEval/0"], comm_problems["HumanEval/2"]], ec.ALL_CATEGORIES)
    assert len(records) == len(items) == 11
    assert summary["settings"]["protocol_settings"]["harness"] == "benchmark"
    originals = [r for r in records.values() if r["category"] == "original"]
    assert all(
        r["round2_messages"] is None and r["code_source"] == "round1" and r["passed"] for r in originals
    )
    modified = [r for r in records.values() if r["category"] != "original"]
    assert all(r["code_source"] == "round1-fallback" and r["passed"] for r in modified)
    head = prompts.EVALUATOR_TEMPLATE[:60]
    assert all(r["evaluator_messages"][0]["content"].startswith(head) for r in modified)
    assert all(r["question_quality"] in (1, 2, 3) and r["evaluator_problems"] == [] for r in modified)
    assert summary["metrics"]["overall"]["communication_rate"] == 0.0  # every reply held a block
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["identity"]["protocol"]["name"] == "benchmark"
    assert run["identity"]["evaluator_temperature"] == 1.0


def test_protocol_options_resolve(comm_path):
    assert ec.resolve_protocol(ec.EvaluateConfig()) == hec.PROTOCOLS["benchmark"]
    ours = ec.resolve_protocol(ec.EvaluateConfig(protocol="clarify-jax"))
    assert ours == hec.PROTOCOLS["clarify-jax"] and ours.original_prompt == "ask-or-code"
    mixed = ec.resolve_protocol(
        ec.EvaluateConfig(original_prompt="ask-or-code", max_total_tokens=(), evaluator_temperature=0.0)
    )
    assert (mixed.original_prompt, mixed.max_total_tokens, mixed.evaluator_temperature, mixed.harness) == (
        "ask-or-code",
        (),
        0.0,
        "benchmark",
    )
    legacy = ec.resolve_protocol(ec.EvaluateConfig(protocol="clarify-jax", whole_response_if_no_fence=False))
    assert legacy.round2_fallback == "empty"
    assert hec.PROTOCOLS["benchmark"].max_total_tokens == (512, 1024)


def test_cli_flags_of_the_protocol():
    import tyro

    config = tyro.cli(
        ec.EvaluateConfig,
        args=[
            "--model",
            "local:x",
            "--protocol",
            "clarify-jax",
            "--max-total-tokens",
            "256",
            "512",
            "--harness",
            "benchmark",
            "--routing",
            "leading-block",
            "--unclosed-fence",
            "asks",
        ],
    )
    assert (config.protocol, config.max_total_tokens, config.harness) == (
        "clarify-jax",
        (256, 512),
        "benchmark",
    )
    assert (ec.resolve_protocol(config).routing, ec.resolve_protocol(config).unclosed_fence) == (
        "leading-block",
        "asks",
    )
    assert ec.resolve_protocol(ec.EvaluateConfig(protocol="clarify-jax")).routing == "any-block"
