"""Synthesis: rules backend on MBPP, filters, resume after SIGKILL, splits, mixing, TFDS storage."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from clarify_jax.backends import BackendError, RulesBackend
from clarify_jax.data import sources
from clarify_jax.data.reference_checks import check_references
from clarify_jax.data.synthesis import (
    FILTERS,
    LOG_FILE,
    Prompts,
    mix,
    read_log,
    rewrite_problem,
    run_synthesis,
)
from clarify_jax.data.tfds_store import read_tfds, tfds_settings, write_tfds
from tests.support.http_servers import ChatServer

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out

TYPES = {"original", "ambiguous", "inconsistent", "incomplete"}


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def mbpp(shared_data):
    return list(sources.read_mbpp(shared_data / "mbpp" / "sanitized-mbpp.json"))


@pytest.fixture(scope="module")
def rules_run(mbpp, tmp_path_factory):
    """All 427 sanitized MBPP problems, references checked in the sandbox, rules backend."""
    out = tmp_path_factory.mktemp("rules")
    checks = check_references(mbpp, progress=False)
    summary = run_synthesis(mbpp, RulesBackend(), out, reference_checks=checks, progress=False)
    return out, summary, checks


def test_rules_backend_gives_four_types_for_every_problem_that_passes(mbpp, rules_run):
    out, summary, checks = rules_run
    passing = {problem_id for problem_id, ok in checks.items() if ok}
    assert len(checks) == 427 and len(passing) >= 420  # a reference may exceed the 3 s limit
    rows = read_rows(out / "train.jsonl") + read_rows(out / "validation.jsonl")
    by_problem = {}
    for row in rows:
        by_problem.setdefault(row["problem_id"], set()).add(row["type"])
    assert set(by_problem) == passing
    assert all(types == TYPES for types in by_problem.values())
    assert summary.rows == {t: len(passing) for t in TYPES} and not summary.failed
    # Counter equality counts a missing key as zero: on a fast machine every reference passes
    assert summary.rejected == Counter({"reference_fails_tests": 4 * (427 - len(passing))})
    for row in rows:
        assert row["backend"] == "rules" and row["prompt_version"] == Prompts.load().version
        if row["type"] == "original":
            assert row["answer"].startswith("```python\n") and row["answer"].endswith("\n```")
            assert [t["role"] for t in row["dialogue"]] == ["user", "assistant"]
        else:
            assert "?" in row["answer"] and "```" not in row["answer"] and "def " not in row["answer"]
            original = next(p for p in mbpp if p.id == row["problem_id"])
            assert row["problem"] != original.prompt
            # Same layout as the Original: whitespace must not tell clear from unclear.
            assert (
                row["problem"].rstrip() + original.prompt[len(original.prompt.rstrip()) :] == row["problem"]
            )
            assert row["problem"].lstrip() == row["problem"] and original.prompt.lstrip() == original.prompt
            user, clarify, answers, code = row["dialogue"]
            assert (clarify["kind"], code["kind"]) == ("clarify", "code")
            assert user["content"] == row["problem"] and clarify["content"] == row["answer"]
            assert original.prompt.strip() in answers["content"]  # the answers restore the original
            assert code["content"] == f"```python\n{original.solutions[0].strip()}\n```"


def test_rewrites_target_what_changed(mbpp):
    backend, prompts = RulesBackend(), Prompts.load()
    problem = next(p for p in mbpp if p.id == "mbpp/3")  # "identify non-prime numbers"
    fields = {"definition": "", "problem": problem.prompt}
    ambiguous = backend.complete(prompts.render("rewrite", type="ambiguous", **fields))
    assert "non-special numbers" in ambiguous and "prime" not in ambiguous.split("assert")[0]
    questions = backend.complete(prompts.render("questions", type="ambiguous", rewritten="", **fields))
    assert questions == "1. What do you mean by 'special': 'composite' or 'prime'?"


def test_ambiguous_rewrites_blur_or_spell_out_the_term_and_rename_the_function():
    from clarify_jax.backends.rules import NEUTRAL_NAMES, make_ambiguous, questions_for

    def prompt(name):
        return (
            f"def {name}(xs):\n"
            '    """ Write a function to find the largest number in a list.\n'
            f"    >>> {name}([1, 3])\n    3\n"
            '    """\n'
        )

    changes = [make_ambiguous(prompt(f"find_largest_{i}")) for i in range(8)]
    for change in changes:
        name = change.text.split("def ")[1].split("(")[0]
        assert (
            name in NEUTRAL_NAMES
            and f">>> {name}([1, 3])" in change.text
            and "find_largest" not in change.text
        )
    blurred = [c for c in changes if "the extreme number" in c.text]
    spelled = [
        c for c in changes if "largest or smallest number" in c.text or "smallest or largest" in c.text
    ]
    assert blurred and spelled and len(blurred) + len(spelled) == len(changes)
    assert questions_for(blurred[0]) == "1. What do you mean by 'extreme': 'largest' or 'smallest'?"
    said = spelled[0].replaced[0][1]
    assert (
        questions_for(spelled[0])
        == f"1. The statement says '{said}': which one do you mean, 'largest' or 'smallest'?"
    )


def test_a_rewrite_takes_the_originals_layout():
    original = '\n\ndef f(x):\n    """ Return x doubled.\n    """\n\n'
    reply = 'Here it is.\n<rewritten>\n  def f(x):\n    """ Return x changed.\n    """\n</rewritten>'
    rewritten, reason = rewrite_problem(reply, original)
    assert reason is None
    assert rewritten == '\n\ndef f(x):\n    """ Return x changed.\n    """\n\n'


def test_incomplete_rewrites_cut_the_description_and_drop_examples_only_when_it_is_too_short():
    from clarify_jax.backends.rules import answers_for, make_incomplete, questions_for

    def prompt(text, examples="    >>> f([[2], [1]])\n    [[1], [2]]\n"):
        return f'def f(xs):\n    """ {text}\n{examples}    """\n'

    long_text = "Write a function to sort a given matrix in ascending order of row sums."
    for examples in ("    >>> f([[2], [1]])\n    [[1], [2]]\n", "    f([[2], [1]]) == [[1], [2]]\n", ""):
        cut = make_incomplete(prompt(long_text, examples))
        # half the words, no dangling "a given"; the examples stay
        assert cut.text == prompt("Write a function to sort.", examples)
        assert cut.removed == ["a given matrix in ascending order of row sums."]
        assert questions_for(cut).startswith("1. The statement seems to leave out a condition")
        assert "a given matrix in ascending order of row sums." in answers_for(cut, "")
    dropped = make_incomplete(prompt("Sort the rows."))  # too short to cut: the examples go
    assert dropped.text == prompt("Sort the rows.", "") and dropped.removed == [
        "    >>> f([[2], [1]])\n    [[1], [2]]"
    ]
    assert questions_for(dropped).startswith("1. Could you give a few example inputs")
    assert make_incomplete(prompt(long_text)) == make_incomplete(prompt(long_text))  # deterministic


def test_inconsistent_rewrites_contradict_examples_in_every_form():
    from clarify_jax.backends.rules import make_inconsistent

    def prompt(examples):
        return f'def f(n):\n    """ Return the number of even digits of n.\n{examples}    """\n'

    for shown, wrong in (
        ("    >>> f(246)\n    3\n", "    >>> f(246)\n    4\n"),
        ("    f(246) == 3\n", "    f(246) == 4\n"),
        ("    f(246) => 3\n", "    f(246) => 4\n"),
    ):
        change = make_inconsistent(prompt(shown))
        assert change.text == prompt(wrong)
        assert change.contradicted == [(shown.rstrip("\n"), wrong.rstrip("\n"))]


def test_splits_are_by_problem_without_leakage(rules_run):
    out, _, checks = rules_run
    train = {r["problem_id"] for r in read_rows(out / "train.jsonl")}
    validation = {r["problem_id"] for r in read_rows(out / "validation.jsonl")}
    assert not train & validation and train | validation == {p for p, ok in checks.items() if ok}
    assert 0.15 <= len(validation) / len(train | validation) <= 0.25


def test_mixing_reaches_the_requested_original_share(rules_run):
    rows = read_rows(rules_run[0] / "train.jsonl")
    for share in (0.2, 0.4, 0.6, 0.8):
        mixed = mix(rows, share, seed=0)
        originals = sum(r["type"] == "original" for r in mixed)
        assert abs(originals / len(mixed) - share) < 0.005
        assert mixed == [r for r in rows if r in mixed]  # order kept
    assert mix(rows, 0.4, seed=0) == mix(rows, 0.4, seed=0) != mix(rows, 0.4, seed=1)


def test_tfds_round_trip_returns_every_row(rules_run, tmp_path):
    out = rules_run[0]
    rows = {split: read_rows(out / f"{split}.jsonl") for split in ("train", "validation")}
    dataset = write_tfds(rows, tmp_path / "tfds", {"source": "mbpp", "seed": 0})
    assert tfds_settings(dataset) == {"source": "mbpp", "seed": 0}
    for split, expected in rows.items():
        source = read_tfds(dataset, split)
        assert len(source) == len(expected)
        got = sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])
        assert got == sorted(expected, key=lambda r: r["id"])


class Scripted:
    """A backend whose replies to each task are given (text, or a function of the prompt), to
    drive the filters; the rules backend answers the rest."""

    name = "scripted"

    def __init__(self, rewrite=None, questions=None, answers=None, fail=False):
        self.rules, self.fail = RulesBackend(), fail
        self.replies = {"rewrite": rewrite, "questions": questions, "answers": answers}

    def complete(self, messages):
        text = messages[-1]["content"]
        if self.fail:
            raise BackendError("HTTP 503 from the test")
        for task, reply in self.replies.items():
            if f"<task>{task}</task>" in text and reply is not None:
                return reply(text) if callable(reply) else reply
        return self.rules.complete(messages)


def _problem_of(prompt):
    return prompt.split("<problem>\n")[1].split("\n</problem>")[0]


# A reply to each task that fails exactly one filter.
FILTERED_REPLIES = {
    "rewrite_untagged": {"rewrite": lambda p: _problem_of(p) + "\nmaybe sorted"},
    "rewrite_unclosed": {"rewrite": lambda p: "<rewritten>\n" + _problem_of(p)[:40]},
    "rewrite_empty": {"rewrite": "Sure.\n<rewritten>\n\n</rewritten>"},
    "rewrite_echoes_prompt": {
        "rewrite": lambda p: f"<rewritten>\n<task>rewrite</task>\n{_problem_of(p)}\n</rewritten>"
    },
    "rewrite_identical": {"rewrite": lambda p: f"<rewritten>\n  {_problem_of(p)}  \n</rewritten>"},
    "questions_empty": {"questions": "  \n"},
    "questions_has_code": {"questions": "def f():\n    return 1?"},
    "questions_no_question_mark": {"questions": "1. Tell me the order."},
    "answers_empty": {"answers": "\n"},
}


@pytest.mark.parametrize("reason", sorted(FILTERED_REPLIES))
def test_each_filter_rejects_and_is_counted(mbpp, tmp_path, reason):
    summary = run_synthesis(mbpp[:3], Scripted(**FILTERED_REPLIES[reason]), tmp_path, progress=False)
    assert summary.rejected == {reason: 9} and summary.rows == {"original": 3} and not summary.failed
    assert summary.rejected_by_type == {t: {reason: 3} for t in ("ambiguous", "inconsistent", "incomplete")}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert list(written["rejected"]) == list(FILTERS)  # every filter, zeros included, in order
    assert written["rejected"][reason] == 9 and sum(written["rejected"].values()) == 9
    assert written["attempted"] == 12 == sum(written["rows"].values()) + 9
    (reply,) = FILTERED_REPLIES[reason].values()
    rejected = [r for entry in read_log(tmp_path / LOG_FILE).values() for r in entry["rejected"]]
    assert len(rejected) == 9 and all(isinstance(r["reply"], str) for r in rejected)  # what it wrote
    if isinstance(reply, str):
        assert {r["reply"] for r in rejected} == {reply}


def test_reference_filters_and_failures_are_retried(mbpp, tmp_path):
    problems = mbpp[:3]
    checks = {problems[0].id: False}
    summary = run_synthesis(
        problems,
        RulesBackend(),
        tmp_path / "c",
        reference_checks=checks,
        types=("ambiguous",),
        progress=False,
    )
    assert summary.rejected == {"reference_fails_tests": 2}
    assert summary.rows == {"original": 2, "ambiguous": 2}
    assert summary.attempted == 6

    summary = run_synthesis(problems, Scripted(fail=True), tmp_path / "d", progress=False)
    assert summary.failed == 9 and summary.rows == {"original": 3} and summary.attempted == 12
    assert len(summary.errors) == 5 and summary.errors[0].endswith("ambiguous: HTTP 503 from the test")
    summary = run_synthesis(problems, RulesBackend(), tmp_path / "d", progress=False)  # the rerun
    assert summary.failed == 0 and summary.rows == {t: 3 for t in TYPES} and not summary.errors


class Batching(Scripted):
    """Scripted, with `complete_many`: records the size of every call; a conversation holding
    `too_long` fails its whole batch, as the local backend's cache check does."""

    def __init__(self, too_long=None, **replies):
        super().__init__(**replies)
        self.batches, self.too_long = [], too_long

    def complete(self, messages):
        raise AssertionError("a batching backend is asked in batches")

    def complete_many(self, chats):
        self.batches.append(len(chats))
        if self.too_long and any(self.too_long in chat[-1]["content"] for chat in chats):
            raise BackendError("conversation renders to too many tokens")
        return [super(Batching, self).complete(chat) for chat in chats]


def test_a_batching_backend_gets_whole_rounds(mbpp, tmp_path):
    backend = Batching()
    summary = run_synthesis(mbpp[:7], backend, tmp_path / "a", batch_size=9, progress=False)
    # 3 problems per round (9 // 3 types): rounds of 9, 9 and 3 conversations, three rounds each.
    assert backend.batches == [9] * 6 + [3] * 3
    assert summary.rows == {t: 7 for t in TYPES}
    expected = read_rows(tmp_path / "a" / "train.jsonl")
    run_synthesis(mbpp[:7], RulesBackend(), tmp_path / "b", progress=False)
    assert read_rows(tmp_path / "b" / "train.jsonl") == [
        {**row, "backend": "rules"} for row in expected
    ]  # the same rows as one at a time

    # A batch that fails is asked again one conversation at a time: only the culprit fails.
    culprit = mbpp[1].prompt.splitlines()[0]
    backend = Batching(too_long=culprit)
    summary = run_synthesis(mbpp[:3], backend, tmp_path / "c", batch_size=9, progress=False)
    assert backend.batches[:4] == [9, 1, 1, 1] and summary.failed == 3 and summary.attempted == 12
    assert summary.rows == {"original": 3, "ambiguous": 2, "inconsistent": 2, "incomplete": 2}


def test_a_cut_last_log_line_is_dropped_and_redone(mbpp, tmp_path):
    run_synthesis(mbpp[:4], RulesBackend(), tmp_path, workers=1, progress=False)
    complete = (tmp_path / "train.jsonl").read_bytes(), (tmp_path / "validation.jsonl").read_bytes()
    log = tmp_path / LOG_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # as if killed while writing line 3
    assert len(read_log(log)) == 2 and log.read_bytes() == b"".join(lines[:2])
    run_synthesis(mbpp[:4], RulesBackend(), tmp_path, workers=1, progress=False)
    assert ((tmp_path / "train.jsonl").read_bytes(), (tmp_path / "validation.jsonl").read_bytes()) == complete


def _synthesize_cli(out, base_url, limit):
    return [
        sys.executable,
        "-m",
        "clarify_jax.cli",
        "synthesize",
        "--source",
        "mbpp",
        "--input",
        str(out.parent / "mbpp.json"),
        "--out",
        str(out),
        "--backend",
        f"openai:rules-over-http@{base_url}",
        "--workers",
        "2",
        "--limit",
        str(limit),
        "--no-check-references",
    ]


def test_killed_run_resumes_to_the_same_files(shared_data, tmp_path):
    (tmp_path / "mbpp.json").write_bytes((shared_data / "mbpp" / "sanitized-mbpp.json").read_bytes())
    rules = RulesBackend()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with ChatServer(lambda messages: rules.complete(messages), delay_s=0.01) as server:
        whole = subprocess.run(
            _synthesize_cli(tmp_path / "whole", server.base_url, 40),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert whole.returncode == 0, whole.stderr
        victim = subprocess.Popen(
            _synthesize_cli(tmp_path / "resumed", server.base_url, 40),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log = tmp_path / "resumed" / LOG_FILE
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 10):
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        done_when_killed = log.read_text().count("\n")
        assert 10 <= done_when_killed < 40
        resumed = subprocess.run(
            _synthesize_cli(tmp_path / "resumed", server.base_url, 40),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    entries = read_log(log)
    assert len(entries) == 40 and log.read_text().count("\n") == 40  # nothing lost, nothing twice
    summary = json.loads(resumed.stdout[resumed.stdout.index("{") : resumed.stdout.rindex("}") + 1])
    assert summary["rows"] == {t: 40 for t in TYPES}
