"""The request path's two calls: gate_enter (limits, then the fair queue) and gate_exit (slot
freed, tokens charged), with real asyncio tasks on a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings

from accounts.limits import LimitSet
from accounts.models import User, UserLimits
from gateway.errors import Flavour, GatewayError
from gateway.limits.admission import CallerLimits
from gateway.limits.gate import caller_limits, gate_enter, gate_exit
from gateway.limits.queue import queue_snapshot
from gateway.limits.standing import standing_read
from gateway.limits.store import store

PROFILE = SimpleNamespace(pk=3, decode_concurrency=1, max_concurrent=None)


@pytest.fixture(autouse=True)
def _own_store(settings: Any, tmp_path: Any) -> None:
    settings.MLXM_DATA_DIR = tmp_path


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)


def leases() -> int:
    return int(store().connection().execute("SELECT count(*) FROM leases").fetchone()[0])


def test_a_refused_request_never_queues_and_an_admitted_one_carries_its_headers() -> None:
    limits = CallerLimits(user_id=1, key_id=2, person=LimitSet(requests_per_minute=1))

    async def scenario() -> None:
        passage = await gate_enter(limits=limits, profile=PROFILE, flavour=Flavour.OPENAI)
        assert passage.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(GatewayError) as refused:
            await gate_enter(limits=limits, profile=PROFILE, flavour=Flavour.ANTHROPIC)
        assert refused.value.status == 429 and refused.value.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert len(queue_snapshot(PROFILE.pk)) == 1  # only the admitted one
        gate_exit(passage, prompt_tokens=3, completion_tokens=4)
        gate_exit(passage, prompt_tokens=3, completion_tokens=4)  # once only

    asyncio.run(scenario())
    assert queue_snapshot(PROFILE.pk) == []


def test_leaving_the_queue_frees_the_caller_s_concurrency_and_exit_charges_the_tokens() -> None:
    ann = CallerLimits(user_id=1, key_id=None, person=LimitSet(max_concurrent=5, tokens_per_day=100))
    bob = CallerLimits(user_id=2, key_id=None, person=LimitSet(max_concurrent=5))

    async def scenario() -> None:
        holder = await gate_enter(limits=ann, profile=PROFILE, flavour=Flavour.OPENAI)
        gone = asyncio.ensure_future(gate_enter(limits=bob, profile=PROFILE, flavour=Flavour.OPENAI))
        await until(lambda: len(queue_snapshot(PROFILE.pk)) == 2)
        assert leases() == 2
        gone.cancel()  # bob's client went away while he waited
        await asyncio.gather(gone, return_exceptions=True)
        assert leases() == 1 and len(queue_snapshot(PROFILE.pk)) == 1
        with override_settings(MLXM_QUEUE_TIMEOUT=0.01), pytest.raises(GatewayError) as waited:
            await gate_enter(limits=bob, profile=PROFILE, flavour=Flavour.OPENAI)
        assert waited.value.status == 503 and leases() == 1
        gate_exit(holder, prompt_tokens=60, completion_tokens=50)

    asyncio.run(scenario())
    assert leases() == 0
    assert [s.used for s in standing_read("u1", ann.person) if s.limit == "tokens_per_day"] == [110]


@pytest.mark.django_db
def test_the_caller_s_limits_are_read_again_after_a_few_seconds(approved_user: User) -> None:
    assert not caller_limits(user=approved_user, key=None, now=1000.0).person
    UserLimits.objects.create(user=approved_user, tokens_per_day=5)
    assert not caller_limits(user=approved_user, key=None, now=1002.0).person  # still the one read
    assert caller_limits(user=approved_user, key=None, now=1006.0).person == LimitSet(tokens_per_day=5)
