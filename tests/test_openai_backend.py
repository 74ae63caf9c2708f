"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

import pytest

from clarify_jax.backends import BackendError, OpenAIBackend
from clarify_jax.backends.openai_http import OpenAIConfig
from tests.support.http_servers import ChatServer

MESSAGES = [{"role": "user", "content": "Is the problem clear?"}]


def backend(server, **overrides):
    config = OpenAIConfig(
        base_url=server.base_url,
        model="tiny-coder",
        api_key_env="TEST_LLM_KEY",
        backoff_s=0.01,
        max_retries=3,
        timeout_s=5,
        **overrides,
    )
    return OpenAIBackend(config)


def test_request_shape_and_reply(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    with ChatServer(lambda messages: "1. Which order?") as server:
        assert backend(server, temperature=0.3, max_tokens=77).complete(MESSAGES) == "1. Which order?"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "model": "tiny-coder",
        "messages": MESSAGES,
        "temperature": 0.3,
        "max_tokens": 77,
    }


def test_no_key_no_authorization_header(monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with ChatServer(lambda messages: "ok") as server:
        backend(server).complete(MESSAGES)
    assert "Authorization" not in server.requests[0]["headers"]


def test_retries_after_429_and_500():
    with ChatServer(lambda messages: "answer", script=[429, 500, 503]) as server:
        assert backend(server).complete(MESSAGES) == "answer"
    assert len(server.requests) == 4


def test_gives_up_after_max_retries_with_the_last_error():
    with ChatServer(lambda messages: "never", script=[500] * 10) as server:
        with pytest.raises(BackendError, match=r"gave up after 4 attempts; last: HTTP 500"):
            backend(server).complete(MESSAGES)
    assert len(server.requests) == 4


def test_client_errors_are_not_retried():
    with ChatServer(lambda messages: "never", script=[400]) as server:
        with pytest.raises(BackendError, match="HTTP 400"):
            backend(server).complete(MESSAGES)
    assert len(server.requests) == 1


def test_malformed_reply_is_retried_then_a_clear_error():
    with ChatServer(lambda messages: "", malformed=True) as server:
        with pytest.raises(
            BackendError,
            match=r"gave up after 4 attempts; last: malformed reply from "
            r".*\(expected choices\[0\]\.message\.content\)",
        ):
            backend(server).complete(MESSAGES)
    assert len(server.requests) == 4


def test_an_html_page_with_status_200_is_retried():
    with ChatServer(lambda messages: "answer", script=["html", "html", 502]) as server:
        assert backend(server).complete(MESSAGES) == "answer"
    assert len(server.requests) == 4


def test_unreachable_server_is_retried_then_reported():
    config = OpenAIConfig(base_url="http://127.0.0.1:9/v1", backoff_s=0.01, max_retries=1, timeout_s=2)
    with pytest.raises(BackendError, match="gave up after 2 attempts"):
        OpenAIBackend(config).complete(MESSAGES)
