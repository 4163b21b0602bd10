"""Issue 29's hook in the request path, through Django's test client: a key's limit refuses with a
429 in each API's shape and its headers, every answer of a caller with limits carries them, and a
request that fails upstream frees its slot. Nothing listens on the model's port (each admitted
request is a 502); the real-server SDK tests follow the lead's fast path (issue 28)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.limits import LimitSet
from accounts.models import User, UserLimits
from gateway.limits.queue import queue_snapshot
from gateway.limits.store import store
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient, post
from profiles.models import ServerProfile
from servers.models import ServerState
from servers.tests.factories import set_server
from testing.net import free_port

pytestmark = pytest.mark.django_db(transaction=True)
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _own_store(settings: Any, tmp_path: Path) -> None:
    settings.MLXM_DATA_DIR = tmp_path


@pytest.fixture
def tiny(tiny_model: Path) -> ServerProfile:
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port())
    set_server(profile, ServerState.RUNNING, port=profile.port)
    return profile


def test_a_key_s_requests_per_minute_refuse_with_a_429_and_headers_in_each_shape(
    approved_user: User, tiny: ServerProfile
) -> None:
    secret = key_create(user=approved_user, name="ci", limits=LimitSet(requests_per_minute=2)).secret
    first = post(ThreadClient(), "/v1/chat/completions", CHAT, authorization=f"Bearer {secret}")
    assert first.status_code == 502  # admitted (nothing listens), counted
    assert (first["x-ratelimit-limit-requests"], first["x-ratelimit-remaining-requests"]) == ("2", "1")
    messages = {**CHAT, "max_tokens": 5}
    second = post(ThreadClient(), "/v1/messages", messages, **{"x-api-key": secret})
    assert second.status_code == 502 and second["anthropic-ratelimit-requests-remaining"] == "0"
    refused = post(ThreadClient(), "/v1/chat/completions", CHAT, authorization=f"Bearer {secret}")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "The key's limit of 2 requests per minute is reached" in refused.json()["error"]["message"]
    anthropic = post(ThreadClient(), "/v1/messages", messages, **{"x-api-key": secret})
    assert anthropic.status_code == 429 and anthropic.json()["error"]["type"] == "rate_limit_error"
    assert anthropic["anthropic-ratelimit-requests-limit"] == "2"
    other = key_create(user=approved_user, name="laptop").secret  # the person has no limit
    assert post(ThreadClient(), "/v1/chat/completions", CHAT, authorization=f"Bearer {other}").status_code == 502


def test_a_failed_request_frees_its_slot_and_its_queue_turn(approved_user: User, tiny: ServerProfile) -> None:
    UserLimits.objects.create(user=approved_user, max_concurrent=1)
    secret = key_create(user=approved_user, name="k").secret
    for _ in range(3):  # one at a time: each frees its slot when it fails
        answer = post(
            ThreadClient(), "/v1/chat/completions", {**CHAT, "stream": True}, authorization=f"Bearer {secret}"
        )
        assert answer.status_code == 502
    assert store().connection().execute("SELECT count(*) FROM leases").fetchone() == (0,)
    assert queue_snapshot(tiny.pk) == []
