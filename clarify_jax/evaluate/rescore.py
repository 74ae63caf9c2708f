"""`clarify-jax evaluate --rescore LOGDIR`: the benchmark authors' own logs, scored with our code.

HumanEvalComm's generate_response.py writes one JSON object per item and phase,
`<option>_dataset_<HumanEvalComm|HumanEval>_model_<model>_topn_<n>_temperature_<t>.log_<phase>`,
with the keys key, name, prompt_type, index, response, answer, question_quality and code:
- HumanEvalComm log_1: round 1 (the reply); log_2: the evaluator's grade and answers (items the
  authors removed by hand are missing: "manualRemove"); log_3: after round 2, with the final code
  (empty when the item's round-2 reply had no fenced block, or when round 1 was code: then the
  round-1 block);
- HumanEval log_1: the original problems, one round, code-only prompt.

The published columns are the benchmark's scripts run over these files, each over its own items
(jie-jw-wu/human-eval-comm at 87c66711: intermedia_analyze.py, syntactic_similarity_OER.py,
measurement_summary_draw_heatmap.py, driven by scripts/script_stepwise_phase123.bat steps 3 to 6):
- Communication Rate: `get_empty_code_percentage(log_2)`, the share of log_2's replies with no
  fenced block (`response_2_code(response) == ''`), over log_2's items;
- Good Question Rate: over log_3's items, the share whose question_quality is 3;
- Pass@1 and Test Pass Rate (HmEvalComm): log_3's code (or, when empty, the round-1 reply's first
  fenced block) through the harness; per item the pass rate is passed / counted tests, Pass@1
  is a rate of 1; both are averaged over log_3's items;
- Pass@1 and Test Pass Rate (HmEval): the same over the HumanEval log_1's items, the code being
  the reply's first fenced block.
Every column is reported with its numerator and item count, so that mixed denominators show, and
the same records are also summarised over one item set (`metrics`, log_3 plus the originals), as
our own evaluations are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clarify_jax.data.problem import Problem
from clarify_jax.evaluate import humanevalcomm, metrics, report
from clarify_jax.evaluate.humanevalcomm import CATEGORIES, ORIGINAL, CommItem, Protocol
from clarify_jax.evaluate.runner import Suite, run_suite
from clarify_jax.sandbox import Limits
from clarify_jax.util.jsonl import BadLine, json_lines

LOG_NAME = re.compile(
    r"^(?:(?P<option>.+?)_)?dataset_(?P<dataset>HumanEvalComm|HumanEval)"
    r"_model_(?P<model>.+?)_topn_(?P<topn>\d+)_temperature_(?P<temperature>[\d.]+)\.log_(?P<phase>[0-3])$"
)
FIELDS = ("name", "prompt_type", "response", "code", "question_quality")
# The log's model name -> the row of the benchmark's published table (report.PUBLISHED) it stands behind.
PUBLISHED_ROW = {"deepseek-coder-6.7b-instruct": "DeepSeek Coder"}
# Items of a log whose published outcome is not what their logged code does, found by rescoring and
# checked against the authors' own per-item records (jie-jw-wu/human-eval-comm at 1e3481d,
# log/record/manualRemove_dataset_HumanEvalComm_model_deepseek-coder-6.7b-instruct_..._log_3): each
# shows, test for test, the outputs of the item scored just before it (named here), whose demo.py had
# the same size once written with Windows line endings (the authors' scripts are .bat files), so that
# Python imported that item's __pycache__/demo.*.pyc, which it validates by source size and mtime in
# whole seconds. The authors' outcome: (tests passed, tests counted, the item whose code ran).
STALE_IMPORTS = {
    "deepseek-coder-6.7b-instruct": {
        "HumanEval/24#2ap": (5, 5, "HumanEval/24#2ac"),
        "HumanEval/48#1c": (4, 7, "HumanEval/48#1a"),
        "HumanEval/92#1c": (9, 10, "HumanEval/92#1a"),
        "HumanEval/133#1p": (3, 12, "HumanEval/133#1c"),
    }
}
COLUMNS = (
    "hmeval_pass@1",
    "pass@1",
    "hmeval_test_pass_rate",
    "test_pass_rate",
    "communication_rate",
    "good_question_rate",
)  # the order of report.PUBLISHED's tuples


class LogError(ValueError):
    """A log that cannot be read: the message names the file and the line."""


# ---- reading the logs ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogEntry:
    file: str
    line: int
    name: str
    category: str
    response: str
    answer: str
    question_quality: Any
    code: str


def find_logs(folder: Path, model: str = "") -> dict[tuple[str, int], Path]:
    """(dataset, phase) -> the log file in `folder`; one model's logs (`model` picks one when the
    folder holds several)."""
    found: dict[str, dict[tuple[str, int], Path]] = defaultdict(dict)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such log folder")
    for path in sorted(folder.iterdir()):
        match = LOG_NAME.match(path.name)
        if match and (not model or match["model"] == model):
            key = (match["dataset"], int(match["phase"]))
            if key in found[match["model"]]:
                raise LogError(
                    f"{folder}: two {key[0]} log_{key[1]} files of {match['model']}: "
                    f"{found[match['model']][key].name} and {path.name}"
                )
            found[match["model"]][key] = path
    if not found:
        of_model = f" of model {model}" if model else ""
        raise LogError(
            f"{folder}: no benchmark logs{of_model} (files named "
            "*dataset_<HumanEvalComm|HumanEval>_model_<model>_topn_<n>_temperature_<t>.log_<phase>)"
        )
    if len(found) > 1:
        raise LogError(
            f"{folder} holds logs of several models ({', '.join(sorted(found))}); pick one with --model"
        )
    logs = next(iter(found.values()))
    if ("HumanEvalComm", 3) not in logs:
        raise LogError(f"{folder}: no HumanEvalComm log_3 (the final code of every item)")
    return logs


def read_log(path: Path, unparsed: list[dict]) -> list[LogEntry]:
    """The entries of one log. A line that is not JSON (a malformed or cut log) raises LogError
    naming it; an entry that is JSON but not a usable item is added to `unparsed`, with its line
    and the reason, and left out."""
    entries = []
    for number, row in json_lines(path):
        if isinstance(row, BadLine) and not row.is_json:
            raise LogError(str(row))
        why = row.reason if isinstance(row, BadLine) else _unusable(row)
        if why:
            unparsed.append({"file": path.name, "line": number, "reason": why})
            continue
        prompt_type = row["prompt_type"]
        category = ORIGINAL if prompt_type == "prompt" else prompt_type[len("prompt") :]
        entries.append(
            LogEntry(
                path.name,
                number,
                row["name"],
                category,
                row["response"],
                str(row.get("answer", "")),
                row["question_quality"],
                row["code"],
            )
        )
    return entries


def _unusable(row: dict) -> str:
    missing = [f for f in FIELDS if f not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    if not all(isinstance(row[f], str) for f in ("name", "prompt_type", "response", "code")):
        return "name, prompt_type, response and code must be strings"
    if row["prompt_type"] not in ("prompt", *(f"prompt{c}" for c in CATEGORIES)):
        return f"unknown prompt_type {row['prompt_type']!r}"
    if row.get("index", 0) != 0:
        return f"index {row['index']}: only the first candidate (topn 1) is rescored"
    return ""


def unique_entries(entries: list[LogEntry], unparsed: list[dict]) -> tuple[list[LogEntry], int]:
    """One entry per item: a line repeating an earlier one exactly is dropped (and counted); one
    that differs from the earlier line of its item is reported in `unparsed` (the first is kept)."""
    first: dict[tuple[str, str], LogEntry] = {}
    repeated = 0
    for entry in entries:
        key = (entry.name, entry.category)
        if key not in first:
            first[key] = entry
        elif dataclasses.replace(entry, line=first[key].line) == first[key]:
            repeated += 1
        else:
            unparsed.append(
                {
                    "file": entry.file,
                    "line": entry.line,
                    "reason": f"a second, different entry for {entry.name} {entry.category} "
                    f"(line {first[key].line} kept)",
                }
            )
    return list(first.values()), repeated


def grade(value: Any) -> int | None:
    """question_quality as logged ("3", "2", "1"; "0" or 0 for items the evaluator never saw)."""
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) in (1, 2, 3) else None


# ---- items and records --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RescoreItem:
    id: str
    comm: CommItem
    entry: LogEntry
    in_log_2: bool


def record_for(item: RescoreItem) -> dict:
    """The log entry in our results format (without test results)."""
    entry, comm = item.entry, item.comm
    leading = humanevalcomm.leading_code_block(entry.response)
    blocks = humanevalcomm.code_blocks(entry.response)
    if comm.category == ORIGINAL:  # one round: the reply's first fenced block
        code, source = (blocks[0], "round1") if blocks else ("", "round1")
    elif entry.code:
        code, source = entry.code, "round1" if leading is not None else "round2"
    else:  # intermedia_analyze.py: `if code == '': code = response_2_code(response)`
        code, source = (blocks[0], "round1-fallback") if blocks else ("", "round2")
    return {
        "id": item.id,
        "problem_id": comm.problem_id,
        "category": comm.category,
        "entry_point": comm.entry_point,
        "log": {"file": entry.file, "line": entry.line, "in_log_2": item.in_log_2},
        "round1_messages": None,
        "round1_response": entry.response,
        "round1_is_code": leading is not None,
        "communicated": not blocks,
        "asked": comm.category != ORIGINAL and (item.in_log_2 or grade(entry.question_quality) is not None),
        "evaluator_messages": None,
        "evaluator_response": None,
        "question_quality": grade(entry.question_quality),
        "logged_question_quality": entry.question_quality,
        "evaluator_problems": [],
        "answers": entry.answer or None,
        "round2_messages": None,
        "round2_response": None,
        "code_source": source,
        "final_code": code,
    }


class _Replay:
    """The 'model' of a rescoring run: the logs already hold every reply."""

    def __init__(self, name: str):
        self.name = name

    def complete(self, messages):
        raise AssertionError("a rescoring run asks no model")


# ---- metrics ------------------------------------------------------------------------------------


def _column(values: Sequence[float], source: str) -> dict:
    return {
        "value": sum(values) / len(values) if values else None,
        "numerator": round(sum(values), 6),
        "items": len(values),
        "source": source,
    }


def published_columns(records: Sequence[dict], log2: Sequence[LogEntry], names: dict[str, str]) -> dict:
    """The six columns of the published table, each over the benchmark's own items for it, with
    per-category values. `names`: log role -> file name."""
    original = [r for r in records if r["category"] == ORIGINAL]
    modified = [r for r in records if r["category"] != ORIGINAL]
    comm = names.get("log_2") or names["log_3"]
    comm_items = (
        [not humanevalcomm.has_code_block(e.response) for e in log2]
        if log2
        else [r["communicated"] for r in modified]
    )

    def six(original_records, modified_records, comm_values) -> dict:
        return {
            "hmeval_pass@1": _column(
                [float(r["passed"]) for r in original_records], names.get("humaneval", "")
            ),
            "hmeval_test_pass_rate": _column(
                [r["test_pass_rate"] for r in original_records], names.get("humaneval", "")
            ),
            "pass@1": _column([float(r["passed"]) for r in modified_records], names["log_3"]),
            "test_pass_rate": _column([r["test_pass_rate"] for r in modified_records], names["log_3"]),
            "communication_rate": _column([float(v) for v in comm_values], comm),
            "good_question_rate": _column(
                [float(r["question_quality"] == 3) for r in modified_records], names["log_3"]
            ),
        }

    columns = six(original, modified, comm_items)
    by_category = {}
    for category in CATEGORIES:
        members = [r for r in modified if r["category"] == category]
        if members:
            values = (
                [not humanevalcomm.has_code_block(e.response) for e in log2 if e.category == category]
                if log2
                else [r["communicated"] for r in members]
            )
            by_category[category] = {
                k: v for k, v in six([], members, values).items() if not k.startswith("hmeval")
            }
    return {"overall": columns, "categories": by_category}


def rescore_metrics(records: list[dict], log2: Sequence[LogEntry], names: dict[str, str], model: str) -> dict:
    """Our usual metrics over one item set, plus the published columns and their comparison."""
    result = metrics.humanevalcomm_metrics(records)
    result["published_columns"] = published_columns(records, log2, names)
    row = PUBLISHED_ROW.get(model)
    if row:
        published = dict(zip(COLUMNS, report.PUBLISHED[row]))

        def difference(columns: dict) -> dict:
            return {
                k: None if columns[k]["value"] is None else round(100 * columns[k]["value"] - published[k], 4)
                for k in COLUMNS
            }

        result["published"] = {
            "row": row,
            "values": published,
            "difference_points": difference(result["published_columns"]["overall"]),
        }
        stale = {k: v for k, v in STALE_IMPORTS.get(model, {}).items() if any(r["id"] == k for r in records)}
        if stale:
            as_run = [
                r
                | {
                    "passed": stale[r["id"]][0] == stale[r["id"]][1],
                    "test_pass_rate": stale[r["id"]][0] / stale[r["id"]][1],
                }
                if r["id"] in stale
                else r
                for r in records
            ]
            result["published"]["stale_imports"] = [
                {
                    "id": k,
                    "ours": next(r["test_pass_rate"] for r in records if r["id"] == k),
                    "authors": passed / total,
                    "authors_ran_the_code_of": ran,
                }
                for k, (passed, total, ran) in stale.items()
            ]
            result["published"]["difference_points_with_the_authors_outcomes_of_those"] = difference(
                published_columns(as_run, log2, names)["overall"]
            )
    return result


def rescore_markdown(rows: dict[str, dict]) -> str:
    parts = []
    for name, m in rows.items():
        columns = m["published_columns"]["overall"]
        published = (m.get("published") or {}).get("values", {})
        parts += [
            f"## Rescored logs: {name}",
            "",
            "| Column | Rescored | Numerator / items | Published | Source |",
            "|---|---|---|---|---|",
        ]
        labels = dict(zip(COLUMNS, report.LEADERBOARD_LABELS))
        for key in COLUMNS:
            c = columns[key]
            shown = f"{published[key]:.2f}%" if key in published else "—"
            parts.append(
                f"| {labels[key]} | {report.percent(c['value'])} | {c['numerator']:g} / "
                f"{c['items']} | {shown} | {c['source']} |"
            )
        parts.append("")
    return "\n".join(parts) + "\n" + report.comm_markdown(rows, published=False)


# ---- the command --------------------------------------------------------------------------------


def rescore_command(config, protocol: Protocol, problems: list[Problem]) -> dict:
    """Read the logs, score every item with `protocol.harness` in the sandbox (resumably, into
    OUT/results.jsonl), and write OUT/summary.json and OUT/results.md."""
    if config.benchmark != "humanevalcomm":
        raise ValueError("--rescore reads HumanEvalComm logs; use --benchmark humanevalcomm")
    folder = Path(config.rescore)
    logs = find_logs(folder, config.model)
    model = LOG_NAME.match(logs[("HumanEvalComm", 3)].name)["model"]
    unparsed: list[dict] = []
    read = {key: read_log(path, unparsed) for key, path in logs.items()}
    lines = {f"{key[0]} log_{key[1]}": len(entries) for key, entries in read.items()}
    repeated = {}
    for key in read:
        read[key], repeated[f"{key[0]} log_{key[1]}"] = unique_entries(read[key], unparsed)
    final, log2 = read[("HumanEvalComm", 3)], read.get(("HumanEvalComm", 2), [])
    originals = read.get(("HumanEval", 1), [])
    in_log_2 = {(e.name, e.category) for e in log2}

    comm_items = {item.id: item for item in humanevalcomm.comm_items(problems, ("original", *CATEGORIES))}
    selected = {p.id for p in problems}
    if config.problems or config.limit is not None:  # a selection: only its problems' lines count
        final, log2, originals = (
            [e for e in entries if e.name in selected] for entries in (final, log2, originals)
        )
    items = []
    for entry in [*[e for e in originals if e.category == ORIGINAL], *final]:
        comm = comm_items.get(f"{entry.name}#{entry.category}")
        if comm is None:
            unparsed.append(
                {
                    "file": entry.file,
                    "line": entry.line,
                    "reason": f"{entry.name} {entry.category} is not an item of {config.data}",
                }
            )
            continue
        items.append(RescoreItem(comm.id, comm, entry, (entry.name, entry.category) in in_log_2))
    missing = sorted(
        {i.problem_id for i in comm_items.values()}
        - {i.comm.problem_id for i in items if i.comm.category == ORIGINAL}
    )

    names = {"log_3": logs[("HumanEvalComm", 3)].name}
    for key, role in ((("HumanEvalComm", 2), "log_2"), (("HumanEval", 1), "humaneval")):
        if key in logs:
            names[role] = logs[key].name
    cache: dict[tuple[str, str, str], dict] = {}
    lock = threading.Lock()

    def score(record: dict, item: RescoreItem, limits: Limits) -> dict:
        # identical code of one problem is run once (e.g. the same reply to 1c and 2ac)
        key = (protocol.harness, item.comm.problem_id, record["final_code"])
        with lock:
            known = cache.get(key)
        if known is None:
            known = humanevalcomm.score(dict(record), item.comm, limits, protocol.harness)
            with lock:
                cache[key] = known
        return record | {k: known[k] for k in ("tests", "passed", "test_pass_rate")}

    suite = Suite(
        "humanevalcomm-rescore",
        items,
        generate=lambda chunk, model_, evaluator_: [record_for(item) for item in chunk],
        score=score,
        metrics=lambda records: rescore_metrics(records, log2, names, model),
        markdown=rescore_markdown,
        charts=report.comm_charts,
    )
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16] for path in logs.values()}
    identity = {
        "rescore": str(folder.resolve()),
        "logs": digests,
        "data": str(Path(config.data).resolve()),
        "harness": protocol.harness,
        "time_limit_s": config.time_limit_s,
    }
    settings = {
        "rescore": str(folder),
        "logs": names,
        "model": model,
        "harness": protocol.harness,
        "protocol": protocol.name,
        "time_limit_s": config.time_limit_s,
        "data": str(config.data),
    }
    summary = run_suite(
        suite,
        _Replay(f"logs:{model}"),
        None,
        config.out,
        identity=identity,
        settings=settings,
        limits=Limits(timeout_s=config.time_limit_s),
        concurrency=config.concurrency,
        resume=config.resume,
        progress=config.progress,
    )
    summary["logs"] = {
        "files": {role: name for role, name in names.items()},
        "entries_read": lines,
        "items": {f"{k[0]} log_{k[1]}": len(v) for k, v in read.items()},
        "repeated_lines_dropped": repeated,
        "unparsed": len(unparsed),
        "unparsed_items": unparsed[:50],
        "original_problems_missing": missing,
        "status_counts": dict(Counter(s for r in _records(config.out) for s in r["tests"]["statuses"])),
    }
    (Path(config.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _records(out: Path) -> list[dict]:
    from clarify_jax.evaluate.runner import LOG_FILE, read_records

    return list(read_records(Path(out) / LOG_FILE).values())
