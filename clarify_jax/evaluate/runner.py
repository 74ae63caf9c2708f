"""Run a benchmark over its items with a model backend (and an evaluator), resumably.

Every finished item is one JSON line in OUT/results.jsonl (prompts, replies, grade, answers,
final code, test outcome), flushed and fsynced before the next is written, so a run killed at
any point (SIGKILL included) loses at most the items in flight. A rerun drops a last line cut
mid-write, keeps every complete record, and does only the items without one; metrics are computed
from the log, one record per item id, so nothing is counted twice.

Model calls are batched when the backend has `complete_many(chats) -> replies` (the local
sampler: one batch per `batch_size` items and round, tests of one batch running while the next
generates), and made concurrently otherwise (HTTP backends: `concurrency` items in flight, each
going through its rounds on its own). Sandboxed test runs are capped at the number of cores, so
that a busy machine does not turn slow code into spurious 3 s timeouts.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clarify_jax.backends.base import BackendError, ChatBackend, Message
from clarify_jax.evaluate.humanevalcomm import Batch
from clarify_jax.sandbox import Limits
from clarify_jax.util.jsonl import append_record, complete_lines

LOG_FILE, RUN_FILE, SUMMARY_FILE, TABLE_FILE = "results.jsonl", "run.json", "summary.json", "results.md"


@dataclasses.dataclass(frozen=True)
class Suite:
    """A benchmark as the runner sees it: items (each with a unique `id`), how to produce their
    records without tests (`generate(items, model, evaluator)`), how to test one record
    (`score(record, item, limits)`), the metrics over records, and the report writers."""

    benchmark: str
    items: Sequence[Any]
    generate: Callable[[list, Batch, Batch | None], list[dict]]
    score: Callable[[dict, Any, Limits], dict]
    metrics: Callable[[list[dict]], dict]
    markdown: Callable[[dict[str, dict]], str]
    charts: Callable[[dict[str, dict], Path], list[Path]]
    needs_evaluator: bool = False


# ---- the log ----------------------------------------------------------------------------------


def read_records(path: Path) -> dict[str, dict]:
    """id -> record of a results log; a last line cut by a crash is removed from the file."""
    records: dict[str, dict] = {}
    for number, line in complete_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not a JSON record ({e.msg}); the log is damaged") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise ValueError(f"{path}:{number}: expected a JSON object with a string 'id'")
        records.setdefault(record["id"], record)  # the first complete record of an item wins
    return records


# ---- backends as batch functions --------------------------------------------------------------


def one_by_one(backend: ChatBackend) -> Batch:
    return lambda chats: [backend.complete(chat) for chat in chats]


def batch_function(backend: ChatBackend, workers: int) -> Batch:
    """The backend's own `complete_many`, else `workers` concurrent `complete` calls."""
    many = getattr(backend, "complete_many", None)
    if callable(many):
        return lambda chats: list(many(chats))

    def concurrent_calls(chats: list[list[Message]]) -> list[str]:
        if len(chats) <= 1:
            return [backend.complete(chat) for chat in chats]
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            return list(pool.map(backend.complete, chats))

    return concurrent_calls


# ---- running ----------------------------------------------------------------------------------


def _prepare(out: Path, identity: dict, settings: dict, resume: bool) -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    log, run_file = out / LOG_FILE, out / RUN_FILE
    if not resume:
        for name in (LOG_FILE, RUN_FILE, SUMMARY_FILE):
            (out / name).unlink(missing_ok=True)
    if log.exists() and run_file.exists():
        before = json.loads(run_file.read_text(encoding="utf-8")).get("identity", {})
        for key in sorted(set(before) | set(identity)):
            if before.get(key) != identity.get(key):
                raise ValueError(
                    f"{out} holds results of another run ({key}: {before.get(key)!r} there, "
                    f"{identity.get(key)!r} now); use another out dir, or resume=False "
                    "to start over"
                )
    run_file.write_text(json.dumps({"identity": identity, "settings": settings}, indent=2) + "\n")
    return read_records(log)


def run_suite(
    suite: Suite,
    model: ChatBackend,
    evaluator: ChatBackend | None,
    out: Path,
    *,
    identity: dict,
    settings: dict | None = None,
    limits: Limits = Limits(),
    concurrency: int = 8,
    batch_size: int = 32,
    resume: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate the items the log in `out` lacks, then write summary.json, results.md and the
    charts from every record of the suite's items. `identity` (model, evaluator, data, protocol
    settings) must match the log's to resume it. Returns the summary."""
    if suite.needs_evaluator and evaluator is None:
        raise ValueError(f"{suite.benchmark} needs an evaluator backend")
    ids = [item.id for item in suite.items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"item ids repeat, e.g. {next(i for i in ids if ids.count(i) > 1)!r}")
    start = time.monotonic()
    log = out / LOG_FILE
    done = _prepare(out, identity, settings or {}, resume)
    todo = [item for item in suite.items if item.id not in done]
    failures: list[str] = []
    test_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
    bar = tqdm(
        total=len(ids),
        initial=len(ids) - len(todo),
        desc=f"evaluating {suite.benchmark}",
        unit="item",
        disable=not progress,
    )

    def scored(record: dict, item: Any) -> dict:
        with test_slots:
            return suite.score(record, item, limits)

    def finish(record: dict) -> None:
        append_record(log, record)
        done[record["id"]] = record
        bar.update(1)
        bar.set_postfix(passed=sum(bool(r.get("passed")) for r in done.values()), failed=len(failures))

    if callable(getattr(model, "complete_many", None)):
        _run_batched(
            suite,
            todo,
            batch_function(model, concurrency),
            batch_function(evaluator, concurrency) if evaluator else None,
            batch_size,
            scored,
            finish,
            failures,
        )
    else:
        _run_concurrent(
            suite,
            todo,
            one_by_one(model),
            one_by_one(evaluator) if evaluator else None,
            concurrency,
            scored,
            finish,
            failures,
        )
    bar.close()
    records = [done[i] for i in ids if i in done]
    summary = {
        "benchmark": suite.benchmark,
        "model": model.name,
        "evaluator": evaluator.name if evaluator else None,
        "items": len(ids),
        "done": len(records),
        "failed": len(failures),
        "complete": len(records) == len(ids),
        "errors": failures[:5],
        "wall_s": round(time.monotonic() - start, 1),
        "metrics": suite.metrics(records),
        "settings": settings or {},
    }
    (out / TABLE_FILE).write_text(suite.markdown({model.name: summary["metrics"]}), encoding="utf-8")
    charts = suite.charts({model.name: summary["metrics"]}, out)
    summary["files"] = {"log": str(log), "table": str(out / TABLE_FILE), "charts": [str(p) for p in charts]}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _run_concurrent(
    suite, todo, model: Batch, evaluator: Batch | None, workers: int, scored, finish, failures
) -> None:
    def one(item):
        return scored(suite.generate([item], model, evaluator)[0], item)

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {pool.submit(one, item): item for item in todo}
        for future in concurrent.futures.as_completed(futures):
            try:
                record = future.result()
            except BackendError as e:
                failures.append(f"{futures[future].id}: {e}")
                continue
            finish(record)


def _run_batched(
    suite, todo, model: Batch, evaluator: Batch | None, batch_size: int, scored, finish, failures
) -> None:
    """Generation stays on this thread (one batch at a time on the accelerator); the tests of a
    batch run in a pool while the next batch generates; only this thread writes the log."""
    pending: list[concurrent.futures.Future] = []

    def drain(wait: bool) -> list[concurrent.futures.Future]:
        if wait:
            concurrent.futures.wait(pending)
        finished = [f for f in pending if f.done()]
        for future in finished:
            finish(future.result())
        return [f for f in pending if f not in finished]

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for begin in range(0, len(todo), max(1, batch_size)):
            chunk = todo[begin : begin + max(1, batch_size)]
            try:
                records = suite.generate(chunk, model, evaluator)
            except BackendError as e:
                failures.extend(f"{item.id}: {e}" for item in chunk)
                continue
            pending += [pool.submit(scored, record, item) for record, item in zip(records, chunk)]
            pending = drain(wait=False)
        drain(wait=True)
