"""Backend specs: the syntax `synthesize --backend` and `evaluate --model/--evaluator` share."""

import pytest

from clarify_jax.backends import BackendSpec, OpenAIBackend, RulesBackend, make_backend, parse_spec
from tests.support.http_servers import ChatServer

EXPECTED = r"; expected openai:<model>\[@<base_url>\], local:<checkpoint dir> or rules$"


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("rules", BackendSpec("rules")),
        ("openai:gpt-4o-mini", BackendSpec("openai", "gpt-4o-mini")),
        (
            "openai:Qwen/Qwen2.5-Coder-32B-Instruct@http://127.0.0.1:8000/v1",
            BackendSpec("openai", "Qwen/Qwen2.5-Coder-32B-Instruct", "http://127.0.0.1:8000/v1"),
        ),
        (
            "openai:claude@2024@https://example.com/v1",
            BackendSpec("openai", "claude@2024", "https://example.com/v1"),
        ),
        ("local:/ckpt/smol", BackendSpec("local", "/ckpt/smol")),
        ("local:runs/a:b", BackendSpec("local", "runs/a:b")),
    ],
)
def test_good_specs(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec, why",
    [
        ("gpt4", "unknown backend 'gpt4'"),
        ("vllm:qwen", "unknown backend 'vllm'"),
        (":qwen", "no backend kind before ':'"),
        ("", "unknown backend ''"),
        ("rules:strict", "rules takes no argument"),
        ("openai:", "openai needs a model name"),
        ("local:", "local needs a checkpoint directory"),
        ("openai:@http://127.0.0.1:8000/v1", "no model name before '@'"),
        (
            "openai:qwen@127.0.0.1:8000/v1",
            r"the base URL after '@' \('127.0.0.1:8000/v1'\) must start with "
            r"http:// or https://",
        ),
        ("openai:qwen@https://", r"the base URL 'https://' has no host"),
    ],
)
def test_bad_specs_say_what_is_wrong_and_what_is_expected(spec, why):
    with pytest.raises(ValueError, match=rf"^--backend spec {spec!r}: {why}{EXPECTED}"):
        parse_spec(spec, what="--backend")


def test_kinds_narrow_what_a_role_accepts():
    expected = (
        r"model spec 'rules': the rules backend cannot be the model; "
        r"expected openai:<model>\[@<base_url>\] or local:<checkpoint dir>$"
    )
    with pytest.raises(ValueError, match=expected):
        make_backend("rules", what="model", kinds=("openai", "local"))


def test_make_backend_builds_each_kind(tmp_path):
    assert isinstance(make_backend("rules"), RulesBackend)
    with ChatServer(lambda messages: "1. Which order?") as server:
        backend = make_backend(
            f"openai:tiny-coder@{server.base_url}",
            temperature=0.3,
            max_tokens=77,
            api_key_env="NO_SUCH_KEY_VAR",
            concurrency=2,
            timeout_s=5,
            max_retries=1,
        )
        assert isinstance(backend, OpenAIBackend) and backend.name == "openai:tiny-coder"
        assert backend.complete([{"role": "user", "content": "Clear?"}]) == "1. Which order?"
    assert server.requests[0]["body"]["temperature"] == 0.3 and server.requests[0]["body"]["max_tokens"] == 77
    assert (backend.config.concurrency, backend.config.timeout_s, backend.config.max_retries) == (2, 5, 1)
    assert make_backend("openai:m").url == "http://127.0.0.1:8000/v1/chat/completions"  # the default URL
    with pytest.raises(
        FileNotFoundError,
        match=rf"backend spec 'local:{tmp_path}/none': "
        rf"{tmp_path}/none is not a directory",
    ):
        make_backend(f"local:{tmp_path}/none")
