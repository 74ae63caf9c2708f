"""JSON-lines files: reading any of them line by line with the file and line of every bad one, and
append-only logs that survive a crash (each record one fsynced line; a last line cut by a crash is
removed when the log is read again, and its item is simply redone)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class BadLine:
    """A non-blank line that is not a JSON object."""

    path: Path
    line: int
    reason: str  # e.g. "invalid JSON (Expecting value, column 1)"
    is_json: bool = False  # valid JSON, but not an object (a list, a number, ...)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """(line number, object) for each non-blank line of a .jsonl or .jsonl.gz file; a line that is
    not a JSON object comes as its BadLine, so that a caller may stop there or read past it."""
    path = Path(path)
    opened = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
    with opened as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                cut = "; the file ends inside this line: it was cut" if not line.endswith("\n") else ""
                yield number, BadLine(path, number, f"invalid JSON ({e.msg}, column {e.colno}){cut}")
                continue
            if not isinstance(row, dict):
                row = BadLine(path, number, f"expected a JSON object, got {type(row).__name__}", is_json=True)
            yield number, row


def complete_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the log's complete, non-blank lines; truncates a cut last line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    return [
        (number, line) for number, line in enumerate(complete.decode("utf-8").splitlines(), 1) if line.strip()
    ]


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
