"""Clarification-aware training data from a programming dataset (the paper's first half).

Every problem yields an Original row (answer: the reference solution in a fenced Python block)
and one row per rewrite type (answer: clarifying questions only), plus for each rewrite the whole
confirm-then-code dialogue: rewritten problem -> questions -> answers -> code.

The run is a log: one JSON line per finished problem, flushed and fsynced, so a killed run
resumes where it stopped. Train/validation files are rebuilt from the log at the end, in problem
order, so a resumed run writes the same files as an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clarify_jax.backends.base import BackendError, ChatBackend
from clarify_jax.data.problem import Problem
from clarify_jax.data.sources import is_valid_python
from clarify_jax.jsonl_log import append_record, complete_lines

REWRITE_TYPES = ("ambiguous", "inconsistent", "incomplete")
TYPE_ORDER = ("original",) + REWRITE_TYPES
# The paper's definitions of the three kinds of unclear problem.
DEFINITIONS = {
    "ambiguous": "a statement that admits several valid interpretations or leaves details unspecified",
    "inconsistent": "a statement that contains parts which conflict with each other (for example a "
                    "description and an example that disagree)",
    "incomplete": "a statement from which key concepts, conditions or examples have been removed",
}
PROMPT_NAMES = ("rewrite", "questions", "answers")
DEFAULT_PROMPTS_DIR = Path(__file__).parent / "prompts"
LOG_FILE = "synthesis_log.jsonl"


@dataclasses.dataclass(frozen=True)
class Prompts:
    rewrite: str
    questions: str
    answers: str

    @classmethod
    def load(cls, directory: Path | None = None) -> Prompts:
        """The default prompts, each overridden by a same-named .txt file in `directory`."""
        texts = {}
        for name in PROMPT_NAMES:
            custom = directory / f"{name}.txt" if directory else None
            path = custom if custom and custom.exists() else DEFAULT_PROMPTS_DIR / f"{name}.txt"
            texts[name] = path.read_text(encoding="utf-8")
        return cls(**texts)

    @property
    def version(self) -> str:
        """Recorded with every row: changes whenever a prompt's text changes."""
        digest = hashlib.sha256("\0".join(getattr(self, n) for n in PROMPT_NAMES).encode()).hexdigest()
        return f"v1-{digest[:10]}"

    def render(self, name: str, **fields: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": getattr(self, name).format(**fields)}]


def fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def extract_rewritten(reply: str) -> str:
    match = re.search(r"<rewritten>\n?(.*?)\n?</rewritten>", reply, re.S)
    return (match.group(1) if match else reply).strip("\n")


CODE_LINE = re.compile(r"^\s*(def |class |import |from \w[\w.]* import |return |```)", re.M)


def is_questions_only(text: str) -> bool:
    """Clarifying questions: at least one question and no code."""
    return "?" in text and not CODE_LINE.search(text)


def _normalized(text: str) -> str:
    return " ".join(text.split())


def synthesize_problem(problem: Problem, backend: ChatBackend, prompts: Prompts,
                       reference_ok: bool | None, types: Iterable[str] = REWRITE_TYPES) -> dict[str, Any]:
    """One log entry: the kept rows, the rejected (type, filter) and the failed (type, error)."""
    provenance = {"problem_id": problem.id, "source": problem.source, "backend": backend.name,
                  "prompt_version": prompts.version}
    entry: dict[str, Any] = {"problem_id": problem.id, "rows": [], "rejected": [], "failed": []}

    def reject(kind: str, reason: str) -> None:
        entry["rejected"].append({"type": kind, "reason": reason})

    solution = problem.solutions[0] if problem.solutions else None
    reason = None
    if solution is None:
        reason = "no_reference_solution"
    elif not is_valid_python(solution):
        reason = "code_does_not_parse"
    elif reference_ok is False:
        reason = "reference_fails_tests"
    if reason:  # every row of this problem ends in this code, so none is usable
        for kind in TYPE_ORDER:
            reject(kind, reason)
        return entry
    code = fenced(solution)
    entry["rows"].append({"id": f"{problem.id}#original", "type": "original", "problem": problem.prompt,
                          "answer": code, **provenance,
                          "dialogue": [{"role": "user", "content": problem.prompt},
                                       {"role": "assistant", "kind": "code", "content": code}]})
    for kind in types:
        fields = {"type": kind, "definition": DEFINITIONS[kind], "problem": problem.prompt}
        try:
            rewritten = extract_rewritten(backend.complete(prompts.render("rewrite", **fields)))
            if not rewritten.strip() or _normalized(rewritten) == _normalized(problem.prompt):
                reject(kind, "rewrite_identical")
                continue
            questions = backend.complete(prompts.render("questions", rewritten=rewritten, **fields)).strip()
            if not is_questions_only(questions):
                reject(kind, "questions_invalid")
                continue
            answers = backend.complete(prompts.render("answers", rewritten=rewritten, questions=questions,
                                                      **fields)).strip()
            if not answers:
                reject(kind, "answers_empty")
                continue
        except BackendError as e:
            entry["failed"].append({"type": kind, "error": str(e)})
            continue
        entry["rows"].append({
            "id": f"{problem.id}#{kind}", "type": kind, "problem": rewritten, "answer": questions,
            **provenance,
            "dialogue": [{"role": "user", "content": rewritten},
                         {"role": "assistant", "kind": "clarify", "content": questions},
                         {"role": "user", "content": answers},
                         {"role": "assistant", "kind": "code", "content": code}]})
    return entry


# ---- the resumable log ----

def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """problem id -> its latest entry. A last line cut by a crash is dropped from the file."""
    entries: dict[str, dict[str, Any]] = {}
    for _, line in complete_lines(path):
        entry = json.loads(line)
        entries[entry["problem_id"]] = entry
    return entries


# ---- splitting and mixing ----

def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(problem_id: str, validation_fraction: float, seed: int) -> str:
    """By problem id, so that all variants of a problem land in the same split."""
    return "validation" if _unit_hash(seed, problem_id) < validation_fraction else "train"


def mix(rows: list[dict[str, Any]], original_share: float | None, seed: int) -> list[dict[str, Any]]:
    """Keep a subset with `original_share` of Original rows (None keeps all), chosen by a seeded
    hash of the row id; the kept rows stay in their order."""
    if original_share is None or not rows:
        return rows
    if not 0 < original_share < 1:
        raise ValueError(f"original_share must be in (0, 1), got {original_share}")
    originals = [r for r in rows if r["type"] == "original"]
    modified = [r for r in rows if r["type"] != "original"]
    if len(originals) / len(rows) > original_share:
        keep = round(original_share * len(modified) / (1 - original_share))
        chosen = originals
    else:
        keep = round(len(originals) * (1 - original_share) / original_share)
        chosen = modified
    dropped = {r["id"] for r in sorted(chosen, key=lambda r: _unit_hash(seed, r["id"]))[keep:]}
    return [r for r in rows if r["id"] not in dropped]


@dataclasses.dataclass
class RunSummary:
    problems: int = 0
    rows: Counter = dataclasses.field(default_factory=Counter)  # per type, after filters
    rejected: Counter = dataclasses.field(default_factory=Counter)  # per filter
    failed: int = 0  # backend failures, retried on the next run
    splits: dict[str, Counter] = dataclasses.field(default_factory=dict)  # per split, per type

    def to_json(self) -> dict[str, Any]:
        return {"problems": self.problems, "rows": dict(self.rows), "rejected": dict(self.rejected),
                "failed": self.failed, "splits": {k: dict(v) for k, v in self.splits.items()}}


def write_splits(problems: list[Problem], entries: dict[str, dict[str, Any]], out: Path,
                 validation_fraction: float, original_share: float | None, seed: int) -> RunSummary:
    summary = RunSummary(problems=len(problems))
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for problem in problems:
        entry = entries.get(problem.id)
        if entry is None:
            continue
        summary.failed += len(entry["failed"])
        summary.rejected.update(r["reason"] for r in entry["rejected"])
        rows = sorted(entry["rows"], key=lambda r: TYPE_ORDER.index(r["type"]))
        summary.rows.update(r["type"] for r in rows)
        by_split[split_of(problem.id, validation_fraction, seed)].extend(rows)
    for split, rows in by_split.items():
        rows = mix(rows, original_share, seed)
        summary.splits[split] = Counter(r["type"] for r in rows)
        tmp = out / f"{split}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(out / f"{split}.jsonl")
    return summary


def run_synthesis(problems: list[Problem], backend: ChatBackend, out: Path, *,
                  prompts: Prompts | None = None, types: tuple[str, ...] = REWRITE_TYPES,
                  reference_checks: dict[str, bool] | None = None, workers: int = 8,
                  validation_fraction: float = 0.2, original_share: float | None = None,
                  seed: int = 0, progress: bool = True) -> RunSummary:
    """Synthesize what the log in `out` lacks, then write train.jsonl and validation.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    prompts = prompts or Prompts.load()
    log_path = out / LOG_FILE
    entries = read_log(log_path)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"problem id {duplicate!r} appears more than once in the source")
    todo = [p for p in problems if p.id not in entries or entries[p.id]["failed"]]
    checks = reference_checks or {}
    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="synthesizing",
               disable=not progress, unit="problem")
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(synthesize_problem, p, backend, prompts, checks.get(p.id), types)
                   for p in todo]
        for future in concurrent.futures.as_completed(futures):
            entry = future.result()
            append_record(log_path, entry)
            entries[entry["problem_id"]] = entry
            failures += len(entry["failed"]) + len(entry["rejected"])
            bar.update(1)
            bar.set_postfix(rejected_or_failed=failures)
    bar.close()
    summary = write_splits(problems, entries, out, validation_fraction, original_share, seed)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary
