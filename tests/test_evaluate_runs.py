"""Whole evaluation runs on the real benchmark files, the model (and evaluator) served by an
OpenAI-compatible server on 127.0.0.1: known answers give exactly known metrics."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clarify_jax.commands.evaluate import EvaluateConfig, evaluate_command
from clarify_jax.data.render import ROUND1_INSTRUCTION
from clarify_jax.data.sources import read_humaneval, read_humanevalcomm, read_mbpp
from clarify_jax.evaluate import humanevalcomm as hec
from clarify_jax.evaluate.code_benchmarks import CODEGEN_INSTRUCTION
from clarify_jax.evaluate.runner import LOG_FILE, RUN_FILE, read_records
from tests.support.http_servers import ChatServer

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out

PROBLEMS = tuple(f"HumanEval/{i}" for i in range(8))
ALL = ("original", *hec.CATEGORIES)


@pytest.fixture(scope="module")
def comm_path(shared_data):
    return shared_data / "humanevalcomm" / "HumanEvalComm.jsonl"


@pytest.fixture(scope="module")
def solutions(comm_path):
    """Every prompt text (original and modified) -> the canonical solution of its problem."""
    table = {}
    for problem in read_humanevalcomm(comm_path):
        for text in (problem.prompt, *problem.variants.values()):
            table[text] = problem.solutions[0]
    return table


def fenced(code):
    return f"```python\n{code}\n```"


def problem_text(messages):
    return messages[0]["content"][len(ROUND1_INSTRUCTION) :]


def config(comm_path, out, server, **overrides):
    values = dict(
        model=f"openai:tiny-coder@{server.base_url}",
        data=comm_path,
        out=out,
        problems=PROBLEMS,
        categories=ALL,
        progress=False,
        concurrency=4,
        protocol="clarify-jax",
    )
    return EvaluateConfig(**(values | overrides))


def test_canonical_code_everywhere_passes_everything_without_asking(comm_path, solutions, tmp_path):
    with ChatServer(lambda messages: fenced(solutions[problem_text(messages)])) as server:
        summary = evaluate_command(config(comm_path, tmp_path, server))
    records = list(read_records(tmp_path / LOG_FILE).values())
    items = hec.comm_items(list(read_humanevalcomm(comm_path))[:8], ALL)
    assert summary["complete"] and summary["done"] == len(items) == len(records) == len(server.requests) == 48
    overall, original = summary["metrics"]["overall"], summary["metrics"]["original"]
    assert original == {
        "items": 8,
        "communication_rate": 0.0,
        "good_question_rate": 0.0,
        "pass@1": 1.0,
        "test_pass_rate": 1.0,
        "asked_rate": 0.0,
        "evaluator_unparsed": 0,
    }
    assert overall["items"] == 40 and overall["pass@1"] == 1.0 and overall["communication_rate"] == 0.0
    assert all(
        r["round1_is_code"] and r["evaluator_messages"] is None and r["code_source"] == "round1"
        for r in records
    )
    assert (tmp_path / "results.md").read_text().count("| openai:tiny-coder | 100.00% | 100.00% |") == 1
    assert {Path(p).name for p in summary["files"]["charts"]} == {f"chart_{g}.png" for g in ("overall", *ALL)}
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"] == summary["metrics"]


# The evaluator's replies, in the forms real models write; the grade a reply means, None: unreadable.
VERDICTS = (
    ("QUALITY=3\nANSWERS=```Follow the original docstring.```", 3),
    ("QUALITY= [2]\nANSWERS: Use the examples.", 2),
    ("**QUALITY**: 3\n**ANSWERS**: As the original says.", 3),
    ("QUALITY: 1", 1),
    ("I would rather not grade this.", None),
)


def verdict_for(text):
    return VERDICTS[len(text) % len(VERDICTS)]


def test_questions_everywhere_go_through_the_evaluator_and_round_two(comm_path, solutions, tmp_path):
    def model(messages):
        if len(messages) == 1:
            return "1. Could you clarify what the function should return?\n2. Are inputs ever empty?"
        assert messages[2]["content"].endswith(hec.ROUND2_INSTRUCTION)
        return "Thanks! Here it is:\n" + fenced(solutions[problem_text(messages)])

    def evaluator(messages):
        modified = re.search(r"<modified_problem>\n(.*?)\n</modified_problem>", messages[0]["content"], re.S)
        return verdict_for(modified.group(1))[0]

    with ChatServer(model) as model_server, ChatServer(evaluator) as judge_server:
        summary = evaluate_command(
            config(comm_path, tmp_path, model_server, evaluator=f"openai:judge@{judge_server.base_url}")
        )
    items = hec.comm_items(list(read_humanevalcomm(comm_path))[:8], ALL)
    records = read_records(tmp_path / LOG_FILE)
    assert len(model_server.requests) == 2 * len(items) and len(judge_server.requests) == len(items)
    grades = {item.id: verdict_for(item.prompt.strip("\n"))[1] for item in items}
    for item in items:
        record = records[item.id]
        assert record["question_quality"] == grades[item.id] and record["code_source"] == "round2"
        assert record["round2_messages"][2]["content"] == record["answers"] + hec.ROUND2_INSTRUCTION
    for group, members in [
        ("overall", [i for i in items if i.category != "original"]),
        ("original", [i for i in items if i.category == "original"]),
        *[(c, [i for i in items if i.category == c]) for c in ("1a", "1p", "2ap")],
    ]:
        metrics = (
            summary["metrics"][group]
            if group in ("overall", "original")
            else summary["metrics"]["categories"][group]
        )
        assert metrics == {
            "items": len(members),
            "communication_rate": 1.0,
            "good_question_rate": pytest.approx(sum(grades[i.id] == 3 for i in members) / len(members)),
            "pass@1": 1.0,
            "test_pass_rate": 1.0,
            "asked_rate": 1.0,
            "evaluator_unparsed": sum(grades[i.id] is None for i in members),
        }
    assert 0 < summary["metrics"]["overall"]["good_question_rate"] < 1


def test_a_wrong_solution_passes_nothing(comm_path, tmp_path):
    wrong = "def {name}(*args, **kwargs):\n    raise ValueError('wrong')"

    def model(messages):
        return fenced(wrong.format(name=re.findall(r"def (\w+)\(", problem_text(messages))[-1]))

    with ChatServer(model) as server:
        summary = evaluate_command(config(comm_path, tmp_path, server, categories=("original", "1a")))
    for group in (summary["metrics"]["overall"], summary["metrics"]["original"]):
        assert group["items"] == 8 and group["pass@1"] == 0.0 and group["test_pass_rate"] == 0.0
    statuses = {s for r in read_records(tmp_path / LOG_FILE).values() for s in r["tests"]["statuses"]}
    assert statuses == {"error"}


KILLED_RUN = """
import sys
from pathlib import Path
from clarify_jax.commands.evaluate import EvaluateConfig, evaluate_command
evaluate_command(EvaluateConfig(model="openai:tiny-coder@" + sys.argv[1], data=Path(sys.argv[2]),
                                out=Path(sys.argv[3]), problems=tuple(sys.argv[4].split(",")),
                                categories=("original", "1a", "1p"), concurrency=2, progress=False,
                                protocol="clarify-jax"))
"""


def test_a_killed_run_resumes_without_losing_or_repeating_items(comm_path, solutions, tmp_path):
    problems = PROBLEMS[:6]
    with ChatServer(lambda messages: fenced(solutions[problem_text(messages)]), delay_s=0.15) as server:
        root = Path(__file__).parents[1]
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                KILLED_RUN,
                server.base_url,
                str(comm_path),
                str(tmp_path),
                ",".join(problems),
            ],
            cwd=root,
            env=os.environ | {"PYTHONPATH": str(root)},
        )
        log = tmp_path / LOG_FILE
        deadline = time.monotonic() + 60
        while (not log.exists() or log.read_text().count("\n") < 4) and time.monotonic() < deadline:
            assert child.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = log.read_bytes()
        kept = before[: before.rfind(b"\n") + 1]
        with open(log, "ab") as f:
            f.write(b'{"id": "HumanEval/5#1a", "round1_resp')  # as if killed mid-write
        assert 4 <= kept.count(b"\n") < 18
        summary = evaluate_command(
            config(
                comm_path,
                tmp_path,
                server,
                problems=problems,
                categories=("original", "1a", "1p"),
                concurrency=2,
            )
        )
    lines = log.read_bytes()
    assert lines.startswith(kept)  # finished items are kept as they were
    ids = [json.loads(line)["id"] for line in lines.splitlines()]
    items = hec.comm_items(list(read_humanevalcomm(comm_path))[:6], ("original", "1a", "1p"))
    expected = {item.id for item in items}
    assert len(ids) == len(set(ids)) == len(expected) == 18 and set(ids) == expected
    assert summary["done"] == 18 and summary["metrics"]["overall"]["pass@1"] == 1.0
    with pytest.raises(ValueError, match="holds results of another run \\(model"):
        evaluate_command(config(comm_path, tmp_path, server, model="openai:other@http://127.0.0.1:9/v1"))
    # A log from before --unclosed-fence counted a cut-off block as asking: not resumed either.
    run_file = tmp_path / RUN_FILE
    run = json.loads(run_file.read_text())
    assert run["identity"].pop("unclosed_fence") == "code"
    run_file.write_text(json.dumps(run))
    with pytest.raises(ValueError, match="another run \\(unclosed_fence: None there, 'code' now"):
        evaluate_command(config(comm_path, tmp_path, server, problems=problems, categories=("original",)))


def sampled_server(prompt_to_problem, correct, wrong, good_counts):
    """Answers the k-th request for a problem correctly while k < its good count."""
    seen = Counter()

    def reply(messages):
        problem = prompt_to_problem[messages[0]["content"][len(CODEGEN_INSTRUCTION) :]]
        seen[problem.id] += 1
        return fenced(correct(problem) if seen[problem.id] <= good_counts[problem.id] else wrong(problem))

    return ChatServer(reply)


def test_humaneval_pass_at_k_on_known_samples(tmp_path):
    problems = list(read_humaneval())[:3]
    good = dict(zip((p.id for p in problems), (4, 1, 0)))
    with sampled_server(
        {p.prompt: p for p in problems},
        lambda p: p.solutions[0],
        lambda p: p.prompt + "    return None\n",
        good,
    ) as server:
        summary = evaluate_command(
            EvaluateConfig(
                model=f"openai:tiny-coder@{server.base_url}",
                benchmark="humaneval",
                out=tmp_path,
                limit=3,
                n_samples=4,
                k=(1, 2, 4),
                temperature=0.8,
                progress=False,
            )
        )
    assert summary["metrics"] == {
        "problems": 3,
        "samples": 12,
        "test_pass_rate": pytest.approx(5 / 12),
        "pass@1": pytest.approx((1 + 0.25 + 0) / 3),
        "pass@2": pytest.approx((1 + (1 - 3 / 6) + 0) / 3),
        "pass@4": pytest.approx((1 + 1 + 0) / 3),
    }
    assert server.requests[0]["body"]["temperature"] == 0.8
    table = (tmp_path / "results.md").read_text()
    assert "| openai:tiny-coder | 3 | 12 | 41.67% | 50.00% | 66.67% | 41.67% |" in table


def test_mbpp_pass_at_k_on_known_samples(shared_data, tmp_path):
    path = shared_data / "mbpp" / "sanitized-mbpp.json"
    problems = list(read_mbpp(path))[:2]
    good = {problems[0].id: 2, problems[1].id: 0}
    with sampled_server(
        {p.prompt: p for p in problems},
        lambda p: p.solutions[0],
        lambda p: p.solutions[0] + "\nraise SystemExit(1)\n",
        good,
    ) as server:
        summary = evaluate_command(
            EvaluateConfig(
                model=f"openai:tiny-coder@{server.base_url}",
                benchmark="mbpp",
                data=path,
                out=tmp_path,
                limit=2,
                n_samples=3,
                k=(1, 3),
                progress=False,
            )
        )
    assert summary["metrics"] == {
        "problems": 2,
        "samples": 6,
        "test_pass_rate": pytest.approx(2 / 6),
        "pass@1": pytest.approx((2 / 3 + 0) / 2),
        "pass@3": pytest.approx(0.5),
    }


class BatchingModel:
    """A model with complete_many (like the local sampler): asks about what changed in round 1
    (it peeks at the original), writes the canonical code in round 2; records its batch sizes."""

    name = "batching-model"

    def __init__(self, problems):
        self.by_text = {t: p for p in problems for t in (p.prompt, *p.variants.values())}
        self.batches = []

    def complete(self, messages):
        raise AssertionError("a batching backend is called through complete_many")

    def complete_many(self, chats):
        self.batches.append(len(chats))
        replies = []
        for chat in chats:
            problem = self.by_text[problem_text(chat)]
            if len(chat) == 3:
                replies.append(fenced(problem.solutions[0]))
            elif problem_text(chat) == problem.prompt:
                replies.append(fenced(problem.solutions[0]))
            else:
                replies.append(f"What does '{problem.entry_point}' mean here, and what should it return?")
        return replies


def test_a_batching_model_with_the_rules_evaluator(comm_path, tmp_path):
    from clarify_jax.backends import RulesBackend
    from clarify_jax.commands import evaluate as ec
    from clarify_jax.evaluate.runner import run_suite

    problems = list(read_humanevalcomm(comm_path))[:4]
    cfg = EvaluateConfig(
        model="unused",
        data=comm_path,
        categories=("original", "1a", "1p"),
        batch_size=5,
        protocol="clarify-jax",
    )
    suite = ec.build_suite(cfg, problems)
    model = BatchingModel(problems)
    summary = run_suite(suite, model, RulesBackend(), tmp_path, identity={}, batch_size=5, progress=False)
    # 12 items (original, 1a, 1p of 4 problems) in batches of 5: round 1 of a batch, then round 2
    # for those of its items that asked (the modified ones).
    assert model.batches == [5, 3, 5, 3, 2, 2]
    records = read_records(tmp_path / LOG_FILE)
    modified = [i for i in suite.items if i.category != "original"]
    graded = [hec.parse_evaluator(records[i.id]["evaluator_response"]).quality for i in modified]
    assert summary["metrics"]["overall"]["good_question_rate"] == sum(g == 3 for g in graded) / len(modified)
    assert summary["metrics"]["overall"]["pass@1"] == 1.0
    assert summary["metrics"]["original"]["asked_rate"] == 0.0
    assert all(records[i.id]["answers"] for i in modified)
