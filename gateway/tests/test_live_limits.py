"""Limits, budgets and the fair queue through the real openai and anthropic SDKs against the app
under gunicorn (its fast path and Django's view) and a real `mlx_lm.server` on the tiny model: the
headers and 429s the SDKs read, a budget crossed in the middle of a stream, a client that leaves
the queue. The test process shares the node's store with the app (one data directory)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import anthropic
import openai
import pytest

from accounts.limits import LimitSet
from accounts.models import UserLimits
from gateway.limits.queue import Ticket, queue_enter, queue_leave, queue_snapshot
from gateway.tests.conftest import Live
from testing.supervisor import wait_for

pytestmark = pytest.mark.mlx
HI = [{"role": "user", "content": "hi"}]


def test_openai_reads_the_headers_and_a_rate_limit_is_a_429_it_retries(live: Live) -> None:
    secret = live.new_secret(limits=LimitSet(requests_per_minute=3))
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert raw.headers["x-ratelimit-limit-requests"] == "3" and raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert raw.parse().choices[0].message is not None
    client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]  # via memory now
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert refused.value.code == "rate_limit_exceeded" and refused.value.response.headers["retry-after"]
    assert "requests per minute" in refused.value.message


def test_a_stream_that_crosses_the_budget_finishes_and_the_next_is_refused_without_retries(live: Live) -> None:
    UserLimits.objects.create(user=live.user, tokens_per_day=1)
    claude = anthropic.Anthropic(base_url=live.web.url, api_key=live.secret, max_retries=2)
    with claude.messages.stream(model="claude-tiny", max_tokens=8, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason in ("max_tokens", "end_turn") and final.usage.output_tokens >= 1  # whole, past the budget
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(model="claude-tiny", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert "daily token budget" in refused.value.message and "renews at" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refused.value.response.headers["anthropic-ratelimit-tokens-remaining"] == "0"


@pytest.fixture
def held(live: Live) -> Iterator[Ticket]:
    """The tiny model serving one request at a time, its one slot held by this test process."""
    live.profile.decode_concurrency = 1
    live.profile.save(update_fields=["decode_concurrency"])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    enter = queue_enter(profile_id=live.profile.pk, capacity=1, user_id=0, key_id=None, who="test")
    ticket = asyncio.run_coroutine_threadsafe(enter, loop).result(30)
    try:
        yield ticket
    finally:
        queue_leave(ticket, capacity=1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_client_that_goes_away_leaves_the_queue_at_once(live: Live, held: Ticket) -> None:
    waiting = lambda: [entry.who for entry in queue_snapshot(live.profile.pk) if not entry.served]  # noqa: E731
    leaving = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0, timeout=2.0)
    with pytest.raises(openai.APITimeoutError):
        leaving.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    wait_for(lambda: waiting() == [], timeout=10, what="the request that timed out to leave the queue")
    patient = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)
    answers: list[object] = []
    asking = threading.Thread(
        target=lambda: answers.append(patient.chat.completions.create(model="tiny", messages=HI, max_tokens=2))  # type: ignore[arg-type]
    )
    asking.start()
    wait_for(lambda: waiting() == [live.user.email], timeout=30, what="the next request to wait its turn")
    queue_leave(held, capacity=1)  # the slot frees: the waiter is woken and answered
    asking.join(60)
    assert len(answers) == 1


def test_two_workers_share_one_count_exactly(live: Live) -> None:
    """20 requests at once through gunicorn's workers against a 10-requests-per-minute key."""
    from concurrent.futures import ThreadPoolExecutor

    secret = live.new_secret(limits=LimitSet(requests_per_minute=10))
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)

    def ask(_: int) -> str:
        try:
            client.chat.completions.create(model="tiny", messages=HI, max_tokens=1)  # type: ignore[arg-type]
        except openai.RateLimitError:
            return "refused"
        return "answered"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(ask, range(20)))
    assert outcomes.count("answered") == 10 and outcomes.count("refused") == 10
