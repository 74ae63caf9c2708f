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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clarify_jax.backends.base import BackendError, ChatBackend, Message
from clarify_jax.data.problem import Problem
from clarify_jax.data.sources import is_valid_python
from clarify_jax.prompts import REWRITE_TYPES, ROW_TYPES
from clarify_jax.util.jsonl import append_record, complete_lines

TYPE_ORDER = ROW_TYPES
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


# ---- filters: each rejected row is counted under the first filter it fails ----

REFERENCE_FILTERS = ("no_reference_solution", "code_does_not_parse", "reference_fails_tests")
REWRITE_FILTERS = (
    "rewrite_untagged",
    "rewrite_unclosed",
    "rewrite_empty",
    "rewrite_echoes_prompt",
    "rewrite_identical",
)
QUESTION_FILTERS = ("questions_empty", "questions_has_code", "questions_no_question_mark")
ANSWER_FILTERS = ("answers_empty",)
FILTERS = REFERENCE_FILTERS + REWRITE_FILTERS + QUESTION_FILTERS + ANSWER_FILTERS

CODE_LINE = re.compile(r"^\s*(def |class |import |from \w[\w.]* import |return |```)", re.M)
PROMPT_TAGS = re.compile(r"</?(task|type|problem|rewritten|questions)>")


def extract_rewritten(reply: str) -> str | None:
    """The text between <rewritten> and </rewritten>; None when the reply lacks the pair."""
    match = re.search(r"<rewritten>\n?(.*?)\n?</rewritten>", reply, re.S)
    return match.group(1).strip("\n") if match else None


def _normalized(text: str) -> str:
    return " ".join(text.split())


def in_layout_of(original: str, text: str) -> str:
    """The text between the original's leading and trailing whitespace. A problem's rows must not
    differ in layout: a model learns to tell clear from unclear by it (once every Original ended in a
    newline and no rewrite did, while every HumanEvalComm prompt ends in one)."""
    head = original[: len(original) - len(original.lstrip())]
    return head + text.strip() + original[len(original.rstrip()) :]


def rewrite_problem(reply: str, original: str) -> tuple[str | None, str | None]:
    """(the rewritten problem in the original's layout, None) or (None, the filter it fails)."""
    rewritten = extract_rewritten(reply)
    if rewritten is None:  # "unclosed": usually a reply cut at max_tokens
        return None, "rewrite_unclosed" if "<rewritten>" in reply else "rewrite_untagged"
    if not rewritten.strip():
        return None, "rewrite_empty"
    if PROMPT_TAGS.search(rewritten) and not PROMPT_TAGS.search(original):
        return None, "rewrite_echoes_prompt"  # the prompt's own sections copied into the problem
    if _normalized(rewritten) == _normalized(original):
        return None, "rewrite_identical"
    return in_layout_of(original, rewritten), None


def questions_filter(text: str) -> str | None:
    """Clarifying questions are at least one question and no code; else the filter they fail."""
    if not text.strip():
        return "questions_empty"
    if CODE_LINE.search(text):
        return "questions_has_code"
    if "?" not in text:
        return "questions_no_question_mark"
    return None


# ---- asking a backend: one conversation at a time, or in batches ----

Reply = str | BackendError
Ask = Callable[[list[list[Message]]], list[Reply]]


def ask_one_at_a_time(backend: ChatBackend) -> Ask:
    def ask(chats: list[list[Message]]) -> list[Reply]:
        replies: list[Reply] = []
        for chat in chats:
            try:
                replies.append(backend.complete(chat))
            except BackendError as e:
                replies.append(e)
        return replies

    return ask


def ask_in_batches(backend: ChatBackend) -> Ask:
    """The backend's `complete_many`; when a batch fails, its conversations are asked again one by
    one, so that only the ones at fault (e.g. too long for the cache) fail."""

    def ask(chats: list[list[Message]]) -> list[Reply]:
        if not chats:
            return []
        try:
            return list(backend.complete_many(chats))
        except BackendError as e:
            if len(chats) == 1:
                return [e]
            return [reply for chat in chats for reply in ask([chat])]

    return ask


# ---- synthesis in three rounds: rewrite, questions, answers ----


@dataclasses.dataclass
class _Job:
    """One rewrite type of one problem, carried through the rounds."""

    entry: dict[str, Any]
    problem: Problem
    kind: str
    code: str
    provenance: dict[str, str]
    rewritten: str = ""
    questions: str = ""
    answers: str = ""

    @property
    def fields(self) -> dict[str, str]:
        return {"type": self.kind, "definition": DEFINITIONS[self.kind], "problem": self.problem.prompt}


def _start(
    problem: Problem, backend_name: str, prompts: Prompts, reference_ok: bool | None, types: tuple[str, ...]
) -> tuple[dict[str, Any], list[_Job]]:
    """The problem's log entry with its Original row (or its rejection), and its rewrite jobs."""
    provenance = {
        "problem_id": problem.id,
        "source": problem.source,
        "backend": backend_name,
        "prompt_version": prompts.version,
    }
    entry: dict[str, Any] = {"problem_id": problem.id, "rows": [], "rejected": [], "failed": []}
    solution = problem.solutions[0] if problem.solutions else None
    reason = None
    if solution is None:
        reason = "no_reference_solution"
    elif not is_valid_python(solution):
        reason = "code_does_not_parse"
    elif reference_ok is False:
        reason = "reference_fails_tests"
    if reason:  # every row of this problem ends in this code, so none is usable
        entry["rejected"] = [{"type": kind, "reason": reason} for kind in ("original",) + types]
        return entry, []
    code = fenced(solution)
    entry["rows"].append(
        {
            "id": f"{problem.id}#original",
            "type": "original",
            "problem": problem.prompt,
            "answer": code,
            **provenance,
            "dialogue": [
                {"role": "user", "content": problem.prompt},
                {"role": "assistant", "kind": "code", "content": code},
            ],
        }
    )
    return entry, [_Job(entry, problem, kind, code, provenance) for kind in types]


def _round(
    jobs: list[_Job],
    ask: Ask,
    chat: Callable[[_Job], list[Message]],
    accept: Callable[[_Job, str], str | None],
) -> list[_Job]:
    """Ask for every job at once; keep the jobs whose reply `accept` takes (it returns the filter
    a reply fails, else None); record the rejected (with the reply, to see what a model wrote)
    and the failed in their entries."""
    kept = []
    for job, reply in zip(jobs, ask([chat(job) for job in jobs])):
        if isinstance(reply, BackendError):
            job.entry["failed"].append({"type": job.kind, "error": str(reply)})
            continue
        reason = accept(job, reply)
        if reason:
            job.entry["rejected"].append({"type": job.kind, "reason": reason, "reply": reply})
        else:
            kept.append(job)
    return kept


def synthesize_problems(
    problems: list[Problem],
    ask: Ask,
    prompts: Prompts,
    backend_name: str,
    reference_checks: dict[str, bool] | None = None,
    types: tuple[str, ...] = REWRITE_TYPES,
) -> list[dict[str, Any]]:
    """One log entry per problem: the kept rows, the rejected (type, filter, reply) and the failed
    (type, error). Each round asks for all the problems' types at once, so a batching backend
    generates them together."""
    checks = reference_checks or {}
    started = [_start(p, backend_name, prompts, checks.get(p.id), types) for p in problems]
    jobs = [job for _, problem_jobs in started for job in problem_jobs]

    def take_rewrite(job: _Job, reply: str) -> str | None:
        rewritten, reason = rewrite_problem(reply, job.problem.prompt)
        job.rewritten = rewritten or ""
        return reason

    def take_questions(job: _Job, reply: str) -> str | None:
        job.questions = reply.strip()
        return questions_filter(job.questions)

    jobs = _round(jobs, ask, lambda job: prompts.render("rewrite", **job.fields), take_rewrite)
    jobs = _round(
        jobs,
        ask,
        lambda job: prompts.render("questions", rewritten=job.rewritten, **job.fields),
        take_questions,
    )

    def take_answers(job: _Job, reply: str) -> str | None:
        job.answers = reply.strip()
        return None if job.answers else "answers_empty"

    jobs = _round(
        jobs,
        ask,
        lambda job: prompts.render("answers", rewritten=job.rewritten, questions=job.questions, **job.fields),
        take_answers,
    )
    for job in jobs:
        job.entry["rows"].append(
            {
                "id": f"{job.problem.id}#{job.kind}",
                "type": job.kind,
                "problem": job.rewritten,
                "answer": job.questions,
                **job.provenance,
                "dialogue": [
                    {"role": "user", "content": job.rewritten},
                    {"role": "assistant", "kind": "clarify", "content": job.questions},
                    {"role": "user", "content": job.answers},
                    {"role": "assistant", "kind": "code", "content": job.code},
                ],
            }
        )
    return [entry for entry, _ in started]


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
    """Every row attempted (a problem's Original and each rewrite type) is kept, rejected by one
    filter or failed in the backend: attempted == sum(rows) + sum(rejected) + failed."""

    problems: int = 0
    attempted: int = 0
    rows: Counter = dataclasses.field(default_factory=Counter)  # per type, after filters
    rejected: Counter = dataclasses.field(default_factory=Counter)  # per filter
    rejected_by_type: dict[str, Counter] = dataclasses.field(default_factory=dict)  # per type, per filter
    failed: int = 0  # backend failures, retried on the next run
    errors: list[str] = dataclasses.field(default_factory=list)  # the first few backend errors
    splits: dict[str, Counter] = dataclasses.field(default_factory=dict)  # per split, per type

    def to_json(self) -> dict[str, Any]:
        # Every filter, in the order they apply, so a zero shows that a filter ran and took nothing.
        rejected = {f: self.rejected[f] for f in FILTERS} | {
            r: n for r, n in self.rejected.items() if r not in FILTERS
        }
        return {
            "problems": self.problems,
            "attempted": self.attempted,
            "rows": dict(self.rows),
            "rejected": rejected,
            "rejected_by_type": {k: dict(v) for k, v in self.rejected_by_type.items()},
            "failed": self.failed,
            "errors": self.errors,
            "splits": {k: dict(v) for k, v in self.splits.items()},
        }


def write_splits(
    problems: list[Problem],
    entries: dict[str, dict[str, Any]],
    out: Path,
    validation_fraction: float,
    original_share: float | None,
    seed: int,
) -> RunSummary:
    summary = RunSummary(problems=len(problems))
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for problem in problems:
        entry = entries.get(problem.id)
        if entry is None:
            continue
        summary.attempted += len(entry["rows"]) + len(entry["rejected"]) + len(entry["failed"])
        summary.failed += len(entry["failed"])
        errors = [f"{problem.id} {f['type']}: {f['error']}" for f in entry["failed"]]
        summary.errors += errors[: 5 - len(summary.errors)]
        for rejection in entry["rejected"]:
            summary.rejected[rejection["reason"]] += 1
            summary.rejected_by_type.setdefault(rejection["type"], Counter())[rejection["reason"]] += 1
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


def run_synthesis(
    problems: list[Problem],
    backend: ChatBackend,
    out: Path,
    *,
    prompts: Prompts | None = None,
    types: tuple[str, ...] = REWRITE_TYPES,
    reference_checks: dict[str, bool] | None = None,
    workers: int = 8,
    batch_size: int | None = None,
    validation_fraction: float = 0.2,
    original_share: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> RunSummary:
    """Synthesize what the log in `out` lacks, then write train.jsonl and validation.jsonl.

    A backend with `complete_many` (the local sampler) gets batches: each round (rewrites, then
    questions, then answers) of batch_size // len(types) problems is one call, made from this
    thread. Other backends (HTTP) get `workers` problems in flight, each asking one at a time.
    batch_size defaults to the backend's own `batch_size` (else 16)."""
    out.mkdir(parents=True, exist_ok=True)
    prompts = prompts or Prompts.load()
    log_path = out / LOG_FILE
    entries = read_log(log_path)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"problem id {duplicate!r} appears more than once in the source")
    todo = [p for p in problems if p.id not in entries or entries[p.id]["failed"]]
    bar = tqdm(
        total=len(problems),
        initial=len(problems) - len(todo),
        desc="synthesizing",
        disable=not progress,
        unit="problem",
    )
    failures = 0

    def record(entry: dict[str, Any]) -> None:
        nonlocal failures
        append_record(log_path, entry)
        entries[entry["problem_id"]] = entry
        failures += len(entry["failed"]) + len(entry["rejected"])
        bar.update(1)
        bar.set_postfix(rejected_or_failed=failures)

    def synthesize(chunk: list[Problem], ask: Ask) -> list[dict[str, Any]]:
        return synthesize_problems(chunk, ask, prompts, backend.name, reference_checks, types)

    if callable(getattr(backend, "complete_many", None)):
        ask = ask_in_batches(backend)
        batch_size = batch_size or getattr(backend, "batch_size", None) or 16
        per_call = max(1, batch_size // max(1, len(types)))
        for begin in range(0, len(todo), per_call):
            for entry in synthesize(todo[begin : begin + per_call], ask):
                record(entry)
    else:
        ask = ask_one_at_a_time(backend)
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            futures = [pool.submit(synthesize, [p], ask) for p in todo]
            for future in concurrent.futures.as_completed(futures):
                record(future.result()[0])
    bar.close()
    summary = write_splits(problems, entries, out, validation_fraction, original_share, seed)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary
