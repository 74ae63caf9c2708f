"""HumanEvalComm's rules (code or questions, the evaluator's reply), the rules evaluator, the
metrics on hand-made records, pass@k, the report and the results log."""

import dataclasses
import json
import math

import pytest

from clarify_jax.backends import RulesBackend
from clarify_jax.backends.rules_evaluator import grade
from clarify_jax.commands import evaluate as ec
from clarify_jax.data.render import ROUND1_INSTRUCTION
from clarify_jax.data.sources import read_humanevalcomm
from clarify_jax.evaluate import humanevalcomm as hec
from clarify_jax.evaluate import metrics, report, runner

FENCE = "```"


@pytest.mark.parametrize(
    "reply, code",
    [
        (f"{FENCE}python\ndef f():\n    return 1\n{FENCE}", "def f():\n    return 1"),
        (f"\n\n  {FENCE}python\nx = 1\n{FENCE}  \n\n", "x = 1"),  # whitespace around the block
        (f"{FENCE}\nx = 1\n{FENCE}", "x = 1"),  # no info string
        (f"{FENCE}python\nx = 1\n{FENCE}\nThis sets x.", "x = 1"),  # text after the block: still code
        (f"{FENCE}python\na = 1\n{FENCE}\n{FENCE}python\nb = 2\n{FENCE}", "a = 1"),  # the first block
        (f"Here is the code:\n{FENCE}python\nx = 1\n{FENCE}", None),  # prose first: it talks
        ("What should f return for an empty list?", None),
        (f"{FENCE}python x = 1{FENCE}", None),  # one line is no block
        (f"{FENCE}python\nx = 1", None),  # never closed
        (f"{FENCE}python\n{FENCE}", None),  # empty
        (f"{FENCE}python\nx = 1\n{FENCE}print(x)\n", None),  # a closing fence line holds only the fence
        ("", None),
    ],
)
def test_code_only_rule(reply, code):
    assert hec.leading_code_block(reply) == code


@pytest.mark.parametrize(
    "reply, leading, anywhere",
    [
        (f"{FENCE}python\nx = 1\n{FENCE}", "x = 1", "x = 1"),
        (f"Here is the code:\n{FENCE}python\nx = 1\n{FENCE}\n{FENCE}\ny = 2\n{FENCE}", None, "x = 1"),
        ("Is the input sorted?", None, None),
        ("Use ```sorted(x)```?", None, None),
    ],
)
def test_round1_routing(reply, leading, anywhere):
    assert hec.round1_code(reply, "leading-block") == leading
    assert hec.round1_code(reply, "any-block") == anywhere


def judging_evaluator():
    """(the chats it was given, an evaluator that grades every reply 1 with no answers)."""
    judged = []

    def evaluator(chats):
        judged.extend(chats)
        return ["QUALITY=1\nANSWERS=```none```"] * len(chats)

    return judged, evaluator


def test_prose_before_code_is_code_under_our_routing_and_a_question_under_the_benchmarks(comm_problems):
    # A trained model's clear prefix before its code: the benchmark's routing sends the reply to
    # the evaluator and a second round; ours tests the block, as the Communication Rate counts it.
    (item,) = hec.comm_items([comm_problems["HumanEval/0"]], ("1a",))
    reply = f"This is a clear problem.\n{FENCE}python\ndef candidate(x, t):\n    return True\n{FENCE}"
    judged, evaluator = judging_evaluator()
    for routing, asked in (("any-block", False), ("leading-block", True)):
        judged.clear()
        protocol = dataclasses.replace(hec.PROTOCOLS["clarify-jax"], routing=routing)
        (record,) = hec.run_dialogues([item], lambda chats: [reply] * len(chats), evaluator, protocol)
        assert (record["round1_is_code"], record["asked"], len(judged)) == (not asked, asked, int(asked))
        assert record["communicated"] is False
        assert record["code_source"] == ("round2" if asked else "round1")
        assert record["final_code"] == "def candidate(x, t):\n    return True"


@pytest.mark.parametrize(
    "reply, communicated",
    [
        ("1. Should the list be sorted?\n2. What about empty input?", True),
        (f"Before I start: is the input sorted?\n{FENCE}python\ndef f(x):\n    return x\n{FENCE}", False),
        (f"{FENCE}python\nx = 1\n{FENCE}", False),
        ("Use ```sorted(x)```?", True),  # inline backticks are no block
    ],
)
def test_communication_counts_replies_without_any_code_block(reply, communicated):
    assert (not hec.has_code_block(reply)) is communicated


@pytest.mark.parametrize(
    "reply, partial",
    [
        (f"{FENCE}python\ndef f(x):\n    return sorted(", "def f(x):\n    return sorted("),  # cut in the code
        (f"This is a clear problem.\n{FENCE}python\ndef f():\n    pass\n", "def f():\n    pass"),
        (f"{FENCE}python\nx = 1{FENCE}", "x = 1"),  # a fence on the last code line
        (f"Is x sorted?\n{FENCE}python\n", None),  # a fence line and nothing after it
        ("Use ```sorted(x)```?", None),  # inline backticks
        ("What should f return?", None),
    ],
)
def test_a_reply_that_ends_inside_its_block_asks_or_codes_as_the_protocol_says(reply, partial):
    # The benchmark needs the closing fence ("asks"); clarify-jax takes the partial block ("code").
    assert hec.code_blocks(reply) == [] and hec.has_code_block(reply) is False
    assert hec.has_code_block(reply, "code") is (partial is not None)
    assert hec.round1_code(reply, "any-block", "code") == partial
    leads = reply.startswith(FENCE)
    assert hec.round1_code(reply, "leading-block", "code") == (partial if leads else None)
    assert hec.round1_code(reply, "any-block") is None and hec.round1_code(reply, "leading-block") is None


def test_a_complete_block_comes_before_an_unclosed_one():
    reply = f"{FENCE}python\nx = 1\n{FENCE}\nand then:\n{FENCE}python\ny = "
    assert hec.code_blocks(reply, "code") == ["x = 1"]
    assert hec.leading_code_block(f"{FENCE}python\nx = 1\n{FENCE}print(x)\n", "code") is None


def test_a_reply_cut_in_its_code_is_tested_under_our_protocol_and_judged_under_the_benchmarks(
    comm_problems,
):
    (item,) = hec.comm_items([comm_problems["HumanEval/0"]], ("1a",))
    reply = f"This is a clear problem.\n{FENCE}python\ndef candidate(x, t):\n    return True\n"
    judged, evaluator = judging_evaluator()
    for unclosed in ("code", "asks"):
        judged.clear()
        protocol = dataclasses.replace(hec.PROTOCOLS["clarify-jax"], unclosed_fence=unclosed)
        (record,) = hec.run_dialogues([item], lambda chats: [reply] * len(chats), evaluator, protocol)
        asks = unclosed == "asks"
        assert (record["communicated"], record["asked"], len(judged)) == (asks, asks, int(asks))
        # Round 2 gets the same reply: under "asks" it has no block either, so the whole reply is tested.
        assert record["code_source"] == ("round2-whole" if asks else "round1")
        assert record["final_code"] == (reply.strip() if asks else "def candidate(x, t):\n    return True")
    assert hec.PROTOCOLS["clarify-jax"].unclosed_fence == "code"
    assert hec.PROTOCOLS["benchmark"].unclosed_fence == "asks"


def test_extract_code_takes_the_first_block_or_the_whole_reply():
    reply = f"Sure.\n{FENCE}python\ndef f():\n    pass\n{FENCE}\nand a test:\n{FENCE}\nf()\n{FENCE}"
    assert hec.extract_code(reply) == "def f():\n    pass"
    assert hec.extract_code("  def f():\n    pass\n") == "def f():\n    pass"
    assert hec.extract_code("def f(): pass", whole_if_unfenced=False) == ""


@pytest.mark.parametrize(
    "reply, quality, answers, problems",
    [
        ("QUALITY=3\nANSWERS=```The list is sorted.```", 3, "The list is sorted.", ()),
        ("QUALITY= 3\nANSWERS= ```\nIt returns the sum.\n```", 3, "It returns the sum.", ()),
        ("QUALITY=[2]\nANSWERS=```[Use ascending order.]```", 2, "[Use ascending order.]", ()),
        ("QUALITY: 1\nANSWERS: ", 1, "", ()),
        (
            "**QUALITY**: 3\n**ANSWERS**: Ascending order.\nBoth ends included.",
            3,
            "Ascending order.\nBoth ends included.",
            (),
        ),
        ("quality = 2\nanswers: the threshold is exclusive", 2, "the threshold is exclusive", ()),
        ("ANSWERS=```text\nOdd numbers only.\n```\nQUALITY=3", 3, "Odd numbers only.", ()),  # other order
        ("ANSWERS: plain answer\nQUALITY=2\n", 2, "plain answer", ()),
        ("QUALITY=[your int]\nQUALITY=3\nANSWERS=```a```", 3, "a", ()),  # template echoed first
        ("QUALITY=3", 3, "", ("answers missing",)),
        ("ANSWERS=```The input is never empty.```", None, "The input is never empty.", ("quality missing",)),
        ("QUALITY=3\nANSWERS=```cut off here", 3, "cut off here", ("answers fence not closed",)),
        ("QUALITY=5\nANSWERS=```x```", None, "x", ("quality 5 is not 1, 2 or 3",)),
        ("I cannot grade these questions.", None, "", ("quality missing", "answers missing")),
    ],
)
def test_evaluator_reply_parsing(reply, quality, answers, problems):
    assert hec.parse_evaluator(reply) == hec.Verdict(quality, answers, problems)


def test_messages_of_both_rounds_and_the_evaluator():
    first = hec.round1_messages("def f(x):\n    '''Sort x.'''\n")
    assert first == [{"role": "user", "content": ROUND1_INSTRUCTION + "def f(x):\n    '''Sort x.'''\n"}]
    second = hec.round2_messages(first, "Ascending?", "Ascending.")
    assert second == [
        *first,
        {"role": "assistant", "content": "Ascending?"},
        {"role": "user", "content": "Ascending." + hec.ROUND2_INSTRUCTION},
    ]
    (judge,) = hec.evaluator_messages("Ascending?", "MODIFIED TEXT", "ORIGINAL TEXT")
    content = judge["content"]
    assert "<original_problem>\nORIGINAL TEXT\n</original_problem>" in content
    assert "<modified_problem>\nMODIFIED TEXT\n</modified_problem>" in content
    assert content.endswith("<questions>\nAscending?\n</questions>\n")
    assert "QUALITY=" in content and "ANSWERS=" in content


@pytest.fixture(scope="module")
def comm_problems(shared_data):
    return {p.id: p for p in read_humanevalcomm(shared_data / "humanevalcomm" / "HumanEvalComm.jsonl")}


def test_items_keep_the_original_entry_point_of_renamed_functions(comm_problems):
    items = {
        i.id: i
        for i in hec.comm_items(
            [comm_problems["HumanEval/0"], comm_problems["HumanEval/41"]], ("original", *hec.CATEGORIES)
        )
    }
    assert sorted(items) == [
        "HumanEval/0#1a",
        "HumanEval/0#1c",
        "HumanEval/0#1p",
        "HumanEval/0#2ap",
        "HumanEval/0#original",
        "HumanEval/41#1a",
        "HumanEval/41#1c",
        "HumanEval/41#1p",
        "HumanEval/41#2ac",
        "HumanEval/41#2ap",
        "HumanEval/41#2cp",
        "HumanEval/41#3acp",
        "HumanEval/41#original",
    ]
    assert items["HumanEval/0#1a"].renamed == "candidate" and items["HumanEval/0#1c"].renamed is None
    assert items["HumanEval/41#1c"].renamed == "is_prime"  # this one is not called candidate
    assert {i.entry_point for k, i in items.items() if k.startswith("HumanEval/0#")} == {"has_close_elements"}
    with pytest.raises(ValueError, match="unknown HumanEvalComm categories \\['4x'\\]"):
        hec.comm_items([comm_problems["HumanEval/0"]], ("1a", "4x"))


def test_code_under_the_modified_name_is_tested_as_the_entry_point(comm_problems):
    (item,) = hec.comm_items([comm_problems["HumanEval/41"]], ("1c",))
    code = "def is_prime(n: int):\n    return n * n\n"
    record = hec.score({"final_code": code}, item)
    assert record["passed"] and record["tests"]["total"] == len(item.tests) == 5
    wrong = hec.score({"final_code": "def is_prime(n):\n    return n if n < 4 else n * n\n"}, item)
    assert not wrong["passed"]
    assert wrong["tests"]["statuses"] == ["failed", "failed", "passed", "passed", "passed"]
    assert wrong["test_pass_rate"] == pytest.approx(0.6)
    empty = hec.score({"final_code": ""}, item)
    assert empty["tests"] == {
        "passed": 0,
        "total": 5,
        "statuses": ["no code"] * 5,
        "first_error": "no code to test",
    }


def _judge(questions, problem, category):
    modified = problem.variants.get(category, problem.prompt)
    reply = RulesBackend().complete(hec.evaluator_messages(questions, modified, problem.prompt))
    return hec.parse_evaluator(reply)


def test_rules_evaluator_grades_questions_by_what_the_modification_changed(comm_problems):
    p0, p1 = comm_problems["HumanEval/0"], comm_problems["HumanEval/1"]
    good = _judge("1. What condition must two numbers meet: closer or larger than the threshold?", p0, "1a")
    assert good.quality == 3 and good.problems == ()
    assert "are any two numbers closer to each other than" in good.answers  # the original's line
    assert _judge("1. Could you clarify the requirements?", p0, "1a").quality == 2
    assert _judge("1. Should the numbers be larger than the threshold?", p0, "1c").quality == 3
    nothing = _judge(f"{FENCE}python\ndef candidate(numbers, limit):\n    return False\n{FENCE}", p0, "1a")
    assert nothing == hec.Verdict(1, "", ())
    # An unmodified prompt: nothing to recover, so at most fair.
    assert _judge("1. What condition must the numbers meet?", p0, "original").quality == 2
    # A change of brackets only (the example's output): its tokens count.
    assert _judge("Is the output ['()', '(())', '(()())'] or ['(', '(', '(']?", p1, "1c").quality == 3
    assert grade("no question here", p0.prompt, p0.variants["1p"]) == 1


def test_rules_backend_still_refuses_unknown_prompts():
    from clarify_jax.backends import BackendError

    with pytest.raises(BackendError, match="rules backend needs"):
        RulesBackend().complete([{"role": "user", "content": "hello"}])


def _record(category, communicated, is_code, quality, passed, rate):
    return {
        "id": f"x#{category}",
        "category": category,
        "communicated": communicated,
        "round1_is_code": is_code,
        "question_quality": quality,
        "passed": passed,
        "test_pass_rate": rate,
    }


def test_humanevalcomm_metrics_on_hand_made_records():
    records = [
        _record("1a", True, False, 3, True, 1.0),
        _record("1a", False, True, None, False, 0.5),
        _record("1a", False, False, 2, False, 0.0),  # prose plus code: asked, not communicated
        _record("1p", True, False, None, True, 1.0),  # evaluator reply unparsed
        _record("original", False, True, None, True, 1.0),
    ]
    result = metrics.humanevalcomm_metrics(records)
    assert result["categories"]["1a"] == {
        "items": 3,
        "communication_rate": 1 / 3,
        "good_question_rate": 1 / 3,
        "pass@1": 1 / 3,
        "test_pass_rate": 0.5,
        "asked_rate": 2 / 3,
        "evaluator_unparsed": 0,
    }
    assert result["overall"] == {
        "items": 4,
        "communication_rate": 0.5,
        "good_question_rate": 0.25,
        "pass@1": 0.5,
        "test_pass_rate": 0.625,
        "asked_rate": 0.75,
        "evaluator_unparsed": 1,
    }
    assert result["original"]["pass@1"] == 1.0 and result["original"]["communication_rate"] == 0.0
    assert set(result["categories"]) == {"1a", "1p"}
    assert metrics.humanevalcomm_metrics([])["overall"]["pass@1"] is None
    with pytest.raises(ValueError, match="unknown categories"):
        metrics.humanevalcomm_metrics([_record("9z", True, False, 3, True, 1.0)])


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),
        (5, 2, 2, 0.7),
        (5, 0, 3, 0.0),
        (5, 5, 1, 1.0),
        (5, 3, 3, 1.0),
        (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
        (200, 13, 10, 1 - math.comb(187, 10) / math.comb(200, 10)),
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_over_problems():
    records = [
        {"problem_id": p, "passed": ok, "test_pass_rate": float(ok)}
        for p, oks in (("a", [1, 1, 0, 0]), ("b", [0, 0, 0, 0]), ("c", [1, 1, 1, 1]))
        for ok in oks
    ]
    result = metrics.pass_at_k_metrics(records, (1, 2, 5))
    assert result == {
        "problems": 3,
        "samples": 12,
        "test_pass_rate": 0.5,
        "pass@1": pytest.approx(0.5),
        "pass@2": pytest.approx((1 - 1 / 6 + 0 + 1) / 3),
        "pass@5": None,
    }
    with pytest.raises(ValueError, match="1 <= k <= n"):
        metrics.pass_at_k(3, 1, 4)


def test_report_table_and_charts(tmp_path):
    group = {
        "items": 2,
        "communication_rate": 0.5,
        "good_question_rate": 0.25,
        "pass@1": 1.0,
        "test_pass_rate": 0.875,
        "asked_rate": 0.5,
        "evaluator_unparsed": 0,
    }
    rows = {"my-model": {"overall": group, "categories": {"1a": group}, "original": group}}
    text = report.comm_markdown(rows)
    assert "| my-model | 100.00% | 100.00% | 87.50% | 87.50% | 50.00% | 25.00% |" in text
    assert "| DeepSeek Coder (published) | 71.78% | 45.68% | 79.44% | 62.25% | 30.76% | 61.42% |" in text
    assert "### Category 1a (2 items)" in text and "### Category 1c" not in text
    charts = report.comm_charts(rows, tmp_path)
    assert [p.name for p in charts] == ["chart_overall.png", "chart_1a.png", "chart_original.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts)
    row = {"problems": 3, "samples": 6, "pass@1": 0.5, "pass@5": None, "test_pass_rate": 0.4}
    assert "| m | 3 | 6 | 50.00% | — | 40.00% |" in report.pass_at_k_markdown({"m": row}, "humaneval")


def test_results_log_drops_a_cut_last_line_and_names_damaged_lines(tmp_path):
    log = tmp_path / "results.jsonl"
    runner.append_record(log, {"id": "a", "v": 1})
    runner.append_record(log, {"id": "b", "v": 2})
    runner.append_record(log, {"id": "a", "v": 3})  # a repeat never counts twice
    with open(log, "a") as f:
        f.write('{"id": "c", "v"')
    assert runner.read_records(log) == {"a": {"id": "a", "v": 1}, "b": {"id": "b", "v": 2}}
    assert log.read_text().endswith('"v": 3}\n')  # the cut line is gone from the file
    log.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: not a JSON record"):
        runner.read_records(log)
    log.write_text(json.dumps({"no_id": 1}) + "\n")
    with pytest.raises(ValueError, match=r"results.jsonl:1: expected a JSON object with a string 'id'"):
        runner.read_records(log)


def test_backend_specs_and_problem_selection_errors(shared_data):
    config = ec.EvaluateConfig(model="rules", temperature=0.5, evaluator_temperature=1.0, concurrency=3)
    expected = (
        r"model spec 'rules': the rules backend cannot be the model; "
        r"expected openai:<model>\[@<base_url>\] or local:<checkpoint dir>$"
    )
    with pytest.raises(ValueError, match=expected):
        ec.role_backend("rules", config, "model")
    with pytest.raises(
        ValueError,
        match=r"evaluator spec 'gpt4': unknown backend 'gpt4'; expected "
        r"openai:<model>\[@<base_url>\], local:<checkpoint dir> or rules",
    ):
        ec.role_backend("gpt4", config, "evaluator")
    backend = ec.role_backend("openai:tiny-coder@http://127.0.0.1:9/v1", config, "model")
    assert backend.name == "openai:tiny-coder" and backend.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (backend.config.temperature, backend.config.concurrency) == (0.5, 3)
    assert ec.role_backend("openai:judge", config, "evaluator").config.temperature == 1.0
    assert ec.role_backend("rules", config, "evaluator").name == "rules"
    with pytest.raises(ValueError, match="humanevalcomm needs data="):
        ec.load_problems(ec.EvaluateConfig(model="x"))
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl: no such file"):
        ec.load_problems(ec.EvaluateConfig(model="x", data=shared_data / "nowhere.jsonl"))
    path = shared_data / "humanevalcomm" / "HumanEvalComm.jsonl"
    with pytest.raises(ValueError, match=r"problems not in .*: \['HumanEval/999'\]"):
        ec.load_problems(ec.EvaluateConfig(model="x", data=path, problems=("HumanEval/1", "HumanEval/999")))
    chosen = ec.load_problems(
        ec.EvaluateConfig(model="x", data=path, problems=("HumanEval/7", "HumanEval/3"))
    )
    assert [p.id for p in chosen] == ["HumanEval/3", "HumanEval/7"]
    assert len(ec.load_problems(ec.EvaluateConfig(model="x", benchmark="humaneval", limit=4))) == 4
    with pytest.raises(ValueError, match=r"k=\[5\] with n_samples=2"):
        ec.build_suite(ec.EvaluateConfig(model="x", benchmark="humaneval", n_samples=2, k=(1, 5)), chosen)
