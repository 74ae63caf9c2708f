"""Backend specs: the one syntax that `synthesize --backend` and `evaluate --model / --evaluator`
use to name a chat backend.

- `openai:<model>[@<base_url>]`: any OpenAI-compatible chat server (vLLM, hosted APIs, Gemini's
  compatible endpoint); without `@<base_url>`, OpenAIConfig's default (a vLLM on 127.0.0.1:8000).
  The URL follows the last `@` and starts with http:// or https://, so a model name may hold `@`
  when the URL is given;
- `local:<dir>`: this project's jitted sampler on a Hugging Face directory, a `clarify-jax convert`
  output or a training run (`clarify_jax.backends.local.LocalBackend`, which batches generations);
- `rules`: the deterministic offline backend (rewrites, questions, answers and evaluator grades).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from clarify_jax.backends.base import ChatBackend
from clarify_jax.backends.openai_http import OpenAIBackend, OpenAIConfig
from clarify_jax.backends.rules import RulesBackend

Kind = Literal["openai", "local", "rules"]
KINDS: tuple[Kind, ...] = ("openai", "local", "rules")
SYNTAX = {"openai": "openai:<model>[@<base_url>]", "local": "local:<checkpoint dir>", "rules": "rules"}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    kind: Kind
    target: str = ""
    """The model name (openai) or the checkpoint directory (local)."""
    base_url: str | None = None
    """openai only; None: OpenAIConfig's default."""


def _expected(kinds: tuple[Kind, ...]) -> str:
    forms = [SYNTAX[k] for k in kinds]
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


def parse_spec(spec: str, *, what: str = "backend", kinds: tuple[Kind, ...] = KINDS) -> BackendSpec:
    """The spec's parts; a ValueError that names `what` and the expected forms when it is malformed
    or of a kind not in `kinds`."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{what} spec {spec!r}: {why}; expected {_expected(kinds)}")

    kind, colon, rest = spec.strip().partition(":")
    if kind not in KINDS:
        raise bad("no backend kind before ':'" if colon and not kind else f"unknown backend {kind!r}")
    if kind not in kinds:
        raise bad(f"the {kind} backend cannot be the {what}")
    if kind == "rules":
        if colon:
            raise bad("rules takes no argument")
        return BackendSpec("rules")
    if not rest.strip():
        raise bad(f"{kind} needs " + ("a model name" if kind == "openai" else "a checkpoint directory"))
    if kind == "local":
        return BackendSpec("local", rest)
    name, at, url = rest.rpartition("@")
    if not at:
        return BackendSpec("openai", rest)
    if not name:
        raise bad("no model name before '@'")
    scheme, _, host = url.partition("://")
    if scheme not in ("http", "https"):
        raise bad(f"the base URL after '@' ({url!r}) must start with http:// or https://")
    if not host:
        raise bad(f"the base URL {url!r} has no host")
    return BackendSpec("openai", name, url)


def make_backend(
    spec: str | BackendSpec,
    *,
    what: str = "backend",
    kinds: tuple[Kind, ...] = KINDS,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout_s: float = 120.0,
    max_retries: int = 6,
    batch_size: int = 16,
    mesh: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    seed: int = 0,
    max_total_tokens: tuple[int, ...] = (),
) -> ChatBackend:
    """The backend a spec names. temperature and max_tokens apply to openai and local;
    api_key_env, concurrency (requests in flight), timeout_s and max_retries to openai;
    batch_size (conversations per sampler call), mesh, dtype, max_length, seed and max_total_tokens
    (prompt plus reply by round, see LocalConfig) to local."""
    if isinstance(spec, str):
        spec = parse_spec(spec, what=what, kinds=kinds)
    if spec.kind == "rules":
        return RulesBackend()
    if spec.kind == "openai":
        config = OpenAIConfig(
            model=spec.target,
            api_key_env=api_key_env,
            temperature=temperature,
            max_tokens=max_tokens,
            concurrency=concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )
        if spec.base_url:
            config = dataclasses.replace(config, base_url=spec.base_url)
        return OpenAIBackend(config)
    path = Path(spec.target).expanduser()
    if not path.is_dir():  # before jax and the model are loaded
        raise FileNotFoundError(f"{what} spec 'local:{spec.target}': {path} is not a directory")
    from clarify_jax.backends.local import LocalBackend  # jax and the model: only when used

    return LocalBackend(
        path,
        temperature=temperature,
        max_new_tokens=max_tokens,
        batch_size=batch_size,
        mesh=mesh,
        dtype=dtype,
        max_length=max_length,
        seed=seed,
        max_total_tokens=tuple(max_total_tokens),
    )
