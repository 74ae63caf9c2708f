"""Append-only JSONL logs that survive a crash: each record is one fsynced line, and a last line
cut by a crash is removed when the log is read again (its item is simply redone)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def complete_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the log's complete, non-blank lines; truncates a cut last line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    return [(number, line) for number, line in enumerate(complete.decode("utf-8").splitlines(), 1)
            if line.strip()]


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
