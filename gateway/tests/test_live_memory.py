"""The gateway answers keys and models from memory (gateway/directory.py) and writes its records
in batches (gateway/recorder.py), through gunicorn's two workers and a real `mlx_lm.server`:
a change made anywhere is obeyed by every worker soon after, a stopped server gets its own
answer, and a SIGTERM to the web server loses no usage record."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
import pytest

from accounts.models import User
from accounts.services import user_disable
from gateway.models import ApiKey, UsageRecord
from gateway.services import key_revoke
from gateway.tests.conftest import Live
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import server_stop
from servers.states import State
from testing.supervisor import wait_for

pytestmark = pytest.mark.mlx

ASK = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
ROUNDS = 12  # requests in a row: with keep-alive off, each worker takes some of them


def statuses(live: Live, secret: str, count: int = ROUNDS) -> list[int]:
    """`count` requests, each on a new connection (so both workers answer some)."""
    headers = {"Authorization": f"Bearer {secret}", "Connection": "close"}
    return [
        httpx.post(f"{live.base_url}/chat/completions", json=ASK, headers=headers, timeout=60).status_code
        for _ in range(count)
    ]


def refused_everywhere(live: Live, secret: str, status: int) -> bool:
    return set(statuses(live, secret)) == {status}


def test_a_revoked_key_is_refused_by_every_worker_soon_after(live: Live) -> None:
    secret = live.new_secret()
    assert set(statuses(live, secret)) == {200}, "remembered by both workers"
    key_revoke(key=ApiKey.objects.get(name="test"), by=live.user)
    wait_for(lambda: refused_everywhere(live, secret, 401), timeout=10, what="the key refused")
    assert set(statuses(live, secret, 3 * ROUNDS)) == {401}, "and never answered again, by either worker"
    assert set(statuses(live, live.secret)) == {200}, "the other keys still work"


def test_a_disabled_person_and_a_key_narrowed_to_another_model_are_refused(
    live: Live, make_user: Callable[..., User]
) -> None:
    other = make_user("other@example.com")
    theirs, mine = live.new_secret(other), live.new_secret()
    assert set(statuses(live, theirs)) == {200} and set(statuses(live, mine)) == {200}
    admin = make_user("admin@example.com", admin=True)
    user_disable(user=other, by=admin)
    ApiKey.objects.get(user=live.user, name="test").profiles.set(
        [ServerProfile.objects.create(name="elsewhere", model="/m", port=9)]
    )
    wait_for(lambda: refused_everywhere(live, theirs, 401), timeout=10, what="the disabled person's key refused")
    wait_for(lambda: refused_everywhere(live, mine, 403), timeout=10, what="the narrowed key refused 'tiny'")


def test_a_server_stopped_since_it_was_remembered_gets_its_own_answer(live: Live) -> None:
    assert set(statuses(live, live.secret)) == {200}
    server_stop(profile=live.profile, by=None)
    wait_for(lambda: Server.objects.get(profile=live.profile).state == State.STOPPED, timeout=60, what="stopped")
    answers = statuses(live, live.secret)
    assert set(answers) == {503}, (
        f"a 503 naming the state, never a 502 connect error: {answers}\n{live.web.output()[-4000:]}"
    )


def test_a_sigterm_to_the_web_server_loses_no_usage_record(live: Live) -> None:
    before = UsageRecord.objects.count()
    sent = 300
    with httpx.Client(base_url=live.base_url, headers={"Authorization": f"Bearer {live.secret}"}) as client:
        for _ in range(sent):
            assert client.post("/chat/completions", json=ASK, timeout=60).status_code == 200
    assert live.web.process is not None
    os.kill(live.web.process.pid, signal.SIGTERM)  # the master; its workers stop gracefully
    live.web.process.wait(timeout=60)
    live.web.process = None
    assert UsageRecord.objects.count() - before == sent
    assert Server.objects.get(profile=live.profile).in_flight == 0, "every request's end was written too"
