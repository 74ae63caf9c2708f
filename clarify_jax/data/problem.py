"""One `Problem` type for every source dataset, and the errors and counts of reading them."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Problem:
    """A programming problem with what is needed to check a solution.

    `tests` are Python snippets (asserts) run after the program and `test_setup`; `io_tests` are
    (stdin, expected stdout) pairs for stdin/stdout problems (APPS). `variants` holds rewritten
    prompts a benchmark ships (HumanEvalComm: "1a", "1c", "1p", "2ac", ...).
    """

    id: str
    source: str
    prompt: str
    entry_point: str | None = None
    solutions: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    test_setup: str = ""
    io_tests: tuple[tuple[str, str], ...] = ()
    benchmark_cases: tuple[tuple[str, str, str], ...] = ()
    """HumanEvalComm's own `test_case` entries as (input, output, relation) strings, for its
    harness (`clarify_jax.evaluate.benchmark_harness`); `tests` holds the same cases as asserts."""
    variants: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)

    @property
    def has_tests(self) -> bool:
        return bool(self.tests or self.io_tests)


class DataError(ValueError):
    """A row that cannot be read; the message names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, what: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: field {field!r}: {what}" if field else f"{where}: {what}")


@dataclasses.dataclass
class ReadReport:
    """What lenient reading skipped (strict reading raises on the first bad row instead)."""

    read: int = 0
    skipped: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def skip(self, error: DataError, keep: int = 20) -> None:
        self.skipped += 1
        if len(self.errors) < keep:
            self.errors.append(str(error))
