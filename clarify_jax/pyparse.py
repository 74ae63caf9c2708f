"""`ast.parse` behind a lock: CPython 3.11 can fail with "AST constructor recursion depth
mismatch" when several threads parse at once (gh-106905), and synthesis parses in threads."""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    with _LOCK:
        return ast.parse(source, mode=mode)


def literal_eval(text: str):
    return ast.literal_eval(parse(text, mode="eval"))
