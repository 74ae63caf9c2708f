"""Before/after comparison of HumanEvalComm runs (the reports of make demo and make reproduce-small)."""

import json

from clarify_jax.evaluate import compare, metrics


def _record(category: str, problem: int, asked: bool, grade: int | None = None, passed: bool = False) -> dict:
    return {
        "id": f"HumanEval/{problem}#{category}",
        "category": category,
        "round1_is_code": not asked,
        "communicated": asked,
        "question_quality": grade if asked else None,
        "passed": passed,
        "test_pass_rate": 1.0 if passed else 0.0,
        "round1_response": "reply " + category,
    }


def _summary(records: list[dict]) -> dict:
    return {"metrics": metrics.humanevalcomm_metrics(records), "items": len(records)}


UNTRAINED = [
    _record("original", 0, asked=True),
    _record("original", 1, asked=False, passed=True),
    _record("1a", 0, asked=True, grade=1),
    _record("1p", 0, asked=False),
    _record("1p", 1, asked=False),
    _record("3acp", 0, asked=True, grade=2),
]
TRAINED = [
    _record("original", 0, asked=False, passed=True),
    _record("original", 1, asked=False, passed=True),
    _record("1a", 0, asked=True, grade=3),
    _record("1p", 0, asked=True, grade=3),
    _record("1p", 1, asked=True, grade=1),
    _record("3acp", 0, asked=False),
]


def test_ask_gap_compares_modified_with_unmodified_prompts():
    assert compare.ask_gap(_summary(UNTRAINED)) == {"unmodified": 0.5, "modified": 0.5, "gap": 0.0}
    assert compare.ask_gap(_summary(TRAINED)) == {"unmodified": 0.0, "modified": 0.75, "gap": 0.75}


def test_comparison_table_has_a_row_per_run_and_every_category():
    runs = {"untrained": _summary(UNTRAINED), "trained": _summary(TRAINED)}
    text = compare.comparison_markdown(runs)
    assert "| Communication Rate | original (2) | 1a (1) | 1p (2) | 3acp (1) | overall (4) |" in text
    assert "| untrained | 50.00% | 100.00% | 0.00% | 100.00% | 50.00% |" in text
    assert "| trained | 0.00% | 100.00% | 100.00% | 0.00% | 75.00% |" in text
    assert "| trained | 0.00% | 75.00% | +75.00 |" in text  # the asking gap
    # The leaderboard layout: Pass@1 (HmEval) from the unmodified prompts, Good Question Rate 2/4.
    assert "| trained | 100.00% | 0.00% | 100.00% | 0.00% | 75.00% | 50.00% |" in text


def test_chart_and_example_replies(tmp_path):
    runs = {"untrained": _summary(UNTRAINED), "trained": _summary(TRAINED)}
    chart = compare.communication_chart(runs, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAINED))
    picks = compare.example_replies(tmp_path)
    picked = [(r["category"], r["question_quality"]) for r in picks]
    assert picked == [("original", None), ("1a", 3), ("1p", 1)]
