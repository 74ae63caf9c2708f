"""OpenAI-compatible chat completions over HTTP (vLLM, hosted APIs, Gemini's compatible endpoint)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request

from clarify_jax.backends.base import BackendError, Message

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class MalformedReply(BackendError):
    """A 200 whose body is not a chat completion (say a proxy's HTML error page): transient, so
    it is retried like a 5xx."""


@dataclasses.dataclass
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root; requests go to {base_url}/chat/completions."""
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key (no Authorization header when it is unset)."""
    temperature: float = 0.0
    max_tokens: int = 1024
    concurrency: int = 8
    """Requests in flight at once."""
    max_retries: int = 6
    """Retries after 429, 5xx, malformed 200 replies, timeouts and connection errors."""
    backoff_s: float = 1.0
    """First retry delay; doubles each retry (with jitter), capped at 60 s; Retry-After wins."""
    timeout_s: float = 120.0


class OpenAIBackend:
    def __init__(self, config: OpenAIConfig | None = None):
        self.config = config or OpenAIConfig()
        self.name = f"openai:{self.config.model}"
        self._slots = threading.BoundedSemaphore(self.config.concurrency)
        self.url = self.config.base_url.rstrip("/") + "/chat/completions"

    def _request(self, messages: list[Message]) -> urllib.request.Request:
        body = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )

    def complete(self, messages: list[Message]) -> str:
        last_error = ""
        for attempt in range(self.config.max_retries + 1):
            retry_after = None
            with self._slots:
                try:
                    with urllib.request.urlopen(self._request(messages), timeout=self.config.timeout_s) as r:
                        return self._parse(r.read())
                except urllib.error.HTTPError as e:
                    detail = e.read()[:300].decode("utf-8", "replace")
                    last_error = f"HTTP {e.code} from {self.url}: {detail}"
                    if e.code not in RETRY_STATUS:
                        raise BackendError(last_error) from None
                    retry_after = e.headers.get("Retry-After")
                except MalformedReply as e:
                    last_error = str(e)
                except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                    last_error = f"{self.url}: {getattr(e, 'reason', e)!r}"
            if attempt < self.config.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise BackendError(f"gave up after {self.config.max_retries + 1} attempts; last: {last_error}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return float(retry_after)
            except ValueError:
                pass
        return min(60.0, self.config.backoff_s * 2**attempt) * (0.5 + random.random() / 2)

    def _parse(self, raw: bytes) -> str:
        try:
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise MalformedReply(
                f"malformed reply from {self.url} (expected choices[0].message.content): "
                f"{raw[:200].decode('utf-8', 'replace')!r}"
            ) from None
        if not isinstance(content, str):
            raise MalformedReply(f"malformed reply from {self.url}: content is {type(content).__name__}")
        return content
