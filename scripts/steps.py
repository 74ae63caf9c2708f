"""What the end-to-end scripts (demo.py, reproduce_small.py) share: timed phases and running
`clarify-jax` subcommands in-process, as a user would type them."""

from __future__ import annotations

import contextlib
import time

TIMINGS: list[tuple[str, float]] = []
"""(phase, seconds) of every phase run so far, in order."""


@contextlib.contextmanager
def phase(name: str):
    print(f"\n{'=' * 100}\n== {name}\n{'=' * 100}", flush=True)
    start = time.monotonic()
    yield
    seconds = time.monotonic() - start
    TIMINGS.append((name, seconds))
    print(f"-- {name}: {seconds:.1f} s", flush=True)


def cli(*args) -> None:
    """Run a `clarify-jax` subcommand in this process."""
    from clarify_jax.cli import main

    args = [str(a) for a in args]
    print("$ clarify-jax " + " ".join(args), flush=True)
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f"clarify-jax {args[0]} failed with exit status {e.code}") from None


def timings_markdown() -> list[str]:
    lines = [f"| {name} | {seconds:.0f} |" for name, seconds in TIMINGS]
    return ["| Phase | Seconds |", "|---|---|", *lines, f"| total | {sum(s for _, s in TIMINGS):.0f} |"]
