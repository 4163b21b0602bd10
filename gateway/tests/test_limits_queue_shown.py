"""The fair queue where people see it: the dashboard card (waiting, by whom, for how long) and
`/metrics`. A real queue held by a real event loop in another thread while the pages are read."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from gateway.limits.queue import queue_enter, queue_leave, queue_snapshot
from profiles.models import ServerProfile
from servers.models import ServerState
from servers.tests.factories import set_server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_store(settings: Any, tmp_path: Any) -> None:
    settings.MLXM_DATA_DIR = tmp_path


@pytest.fixture
def busy(admin_user: User) -> Iterator[ServerProfile]:
    """The profile serving one request of the admin's while ann@example.com's two wait."""
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9011)
    set_server(profile, state=ServerState.RUNNING)
    ready, done = threading.Event(), threading.Event()

    async def hold() -> None:
        def enter(user: int, who: str) -> asyncio.Task[Any]:
            return asyncio.ensure_future(
                queue_enter(profile_id=profile.pk, capacity=1, user_id=user, key_id=None, who=who)
            )

        holder = await enter(admin_user.pk, admin_user.email)
        waiters = [enter(999, "ann@example.com") for _ in range(2)]
        while sum(not w.served for w in queue_snapshot(profile.pk)) < 2:
            await asyncio.sleep(0.001)
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        queue_leave(holder, capacity=1)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    assert ready.wait(30)
    try:
        yield profile
    finally:
        done.set()
        thread.join(30)


def test_the_card_shows_who_waits_and_for_how_long(busy: ServerProfile, admin_client: Client) -> None:
    page = admin_client.get("/servers/").content.decode()
    assert 'class="card-queue"' in page
    assert "2 waiting" in page and "ann@example.com 2" in page and "1 served" in page


def test_metrics_show_the_queue(busy: ServerProfile, admin_client: Client) -> None:
    text = admin_client.get("/metrics").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("mlxm_gateway_queue")
    }
    node = next(labels for (name, labels) in samples if name == "mlxm_gateway_queue_serving")
    assert samples[("mlxm_gateway_queue_serving", node)] == 1
    waiting = {labels: value for (name, labels), value in samples.items() if name == "mlxm_gateway_queue_waiting"}
    assert [dict(labels)["user"] for labels in waiting] == ["ann@example.com"] and list(waiting.values()) == [2]
    assert any(name == "mlxm_gateway_queue_oldest_wait_seconds" for name, _ in samples)
