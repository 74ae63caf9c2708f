"""`clarify-jax` as a user runs it: a separate process, on the CPU."""

import os
import subprocess
import sys


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m clarify_jax.cli ARGS`; `env` entries are added to the environment (None removes one)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", "clarify_jax.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
