"""The gateway's meter stamps a server's last use while a stream flows, at most every few seconds."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from gateway.meter import USE_STAMP_INTERVAL, Meter, _pending
from gateway.models import GatewayApi
from profiles.models import ServerProfile
from servers.models import Server

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def last_used(server: Server) -> datetime | None:
    return Server.objects.values_list("last_used_at", flat=True).get(pk=server.pk)


async def stream_chunks(meter: Meter, count: int) -> None:
    for _ in range(count):
        meter.token()
    await asyncio.gather(*_pending)


def run_in_thread(meter: Meter, count: int) -> None:
    """Its own event loop in a fresh thread (the stamp is written from yet another thread)."""
    thread = threading.Thread(target=lambda: asyncio.run(stream_chunks(meter, count)))
    thread.start()
    thread.join(30)


@pytest.mark.django_db(transaction=True)
def test_a_long_stream_stamps_last_use_while_it_flows_but_not_per_chunk() -> None:
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    server = Server.objects.create(profile=profile, in_flight=1, last_used_at=LONG_AGO)
    meter = Meter(api=GatewayApi.CHAT, stream=True, profile=profile, in_use=True)

    run_in_thread(meter, 50)
    assert last_used(server) == LONG_AGO, "the request's begin stamped it a moment ago: no write yet"

    meter.stamped_at = time.perf_counter() - USE_STAMP_INTERVAL  # the stream has flowed that long
    run_in_thread(meter, 50)
    stamped = last_used(server)
    assert stamped is not None and stamped > LONG_AGO
    Server.objects.filter(pk=server.pk).update(last_used_at=LONG_AGO)
    run_in_thread(meter, 50)
    assert last_used(server) == LONG_AGO, "one write per interval, however many chunks"


@pytest.mark.django_db(transaction=True)
def test_a_request_not_counted_in_flight_stamps_nothing() -> None:
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    server = Server.objects.create(profile=profile, in_flight=0, last_used_at=LONG_AGO)
    meter = Meter(api=GatewayApi.CHAT, stream=True, profile=profile, in_use=True)
    meter.stamped_at = time.perf_counter() - USE_STAMP_INTERVAL
    run_in_thread(meter, 5)
    assert last_used(server) == LONG_AGO, "an ended request's server is not marked as used by it"
