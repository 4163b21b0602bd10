"""The rate-limit headers and 429 bodies, as pure functions, and what the real openai and anthropic
SDKs make of them when a real HTTP server sends them: a rate limit is retried after Retry-After,
a budget reached is not retried at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from gateway.errors import Flavour, error_response
from gateway.limits.admission import Quota, RateState, Refusal
from gateway.limits.headers import go_duration, rate_headers, refusal_error, rfc3339

NOW = 1_796_731_230.0  # 2026-12-08 12:00:30 UTC
STATE = RateState(
    requests=Quota("requests_per_minute", 60, 0, NOW + 30),
    tokens=Quota("tokens_per_day", 100_000, 0, NOW + 12 * 3600 - 30),
    now=NOW,
)
MINUTE = Refusal("requests_per_minute", "key", 1, STATE, "The key's limit of 60 requests per minute is reached")
BUDGET = Refusal("tokens_per_day", "person", 43170, STATE, "The daily token budget: it renews at 2026-12-09 00:00 UTC.")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.9991, "1000ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (43170, "11h59m30s")],
)
def test_openai_resets_read_as_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_headers_in_each_api_s_words() -> None:
    assert rate_headers(STATE, Flavour.OPENAI) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "11h59m30s",
    }
    assert rate_headers(STATE, Flavour.ANTHROPIC) == {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-12-08T12:01:00Z",
        "anthropic-ratelimit-tokens-limit": "100000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 12 * 3600 - 30),
    }
    assert rate_headers(RateState(), Flavour.OPENAI) == {}


def test_a_refusal_is_a_429_in_each_shape_and_a_budget_says_not_to_retry() -> None:
    minute = error_response(Flavour.OPENAI, refusal_error(MINUTE, Flavour.OPENAI))
    assert minute.status_code == 429 and minute["Retry-After"] == "1" and "x-should-retry" not in minute
    assert minute["x-ratelimit-remaining-requests"] == "0"
    error = json.loads(minute.content)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded") and "60 requests" in error["message"]
    budget = error_response(Flavour.ANTHROPIC, refusal_error(BUDGET, Flavour.ANTHROPIC))
    assert budget.status_code == 429 and budget["x-should-retry"] == "false" and budget["Retry-After"] == "43170"
    assert json.loads(budget.content) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": BUDGET.message},
    }
    openai_budget = json.loads(error_response(Flavour.OPENAI, refusal_error(BUDGET, Flavour.OPENAI)).content)
    assert openai_budget["error"]["code"] == "insufficient_quota"


class _Refusing(BaseHTTPRequestHandler):
    refusal: Refusal = MINUTE
    seen: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.path)
        flavour = Flavour.ANTHROPIC if self.path.endswith("/messages") else Flavour.OPENAI
        answer = error_response(flavour, refusal_error(self.refusal, flavour))
        self.send_response(answer.status_code)
        for name, value in answer.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[tuple[ThreadingHTTPServer, type[_Refusing]]]:
    handler = type("Handler", (_Refusing,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_the_sdks_retry_a_rate_limit_and_give_up_at_once_on_a_budget(
    refusing: tuple[ThreadingHTTPServer, type[_Refusing]],
) -> None:
    server, handler = refusing
    base = f"http://127.0.0.1:{server.server_address[1]}"
    chat = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=1)
    with pytest.raises(openai.RateLimitError) as raised:
        chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.response.headers["x-ratelimit-limit-requests"] == "60"
    assert len(handler.seen) == 2  # retried once, after Retry-After
    handler.refusal, handler.seen[:] = BUDGET, []
    with pytest.raises(openai.RateLimitError) as raised:
        chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "insufficient_quota" and len(handler.seen) == 1
    claude = anthropic.Anthropic(base_url=base, api_key="k", max_retries=1)
    handler.seen[:] = []
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "daily token budget" in str(refused.value) and len(handler.seen) == 1
    handler.refusal, handler.seen[:] = MINUTE, []
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert len(handler.seen) == 2
