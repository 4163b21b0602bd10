"""The gateway's meter notes a server's use while a stream flows, at most every few seconds, and
the recorder writes it (and the request's begin and end) in batches."""

from __future__ import annotations

import runpy
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accounts.models import User
from gateway.meter import USE_STAMP_INTERVAL, Meter
from gateway.models import GatewayApi, UsageRecord
from gateway.recorder import Recorder, recorder
from profiles.models import ServerProfile
from servers.models import Server

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def row(server: Server) -> tuple[int, datetime | None]:
    return Server.objects.values_list("in_flight", "last_used_at").get(pk=server.pk)


@pytest.mark.django_db(transaction=True)
def test_a_long_stream_notes_its_use_once_per_interval_not_per_chunk() -> None:
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    server = Server.objects.create(profile=profile, in_flight=1, last_used_at=LONG_AGO)
    meter = Meter(api=GatewayApi.CHAT, stream=True, profile=profile, in_use=True)
    recorder.flush()

    for _ in range(50):
        meter.token()
    assert profile.pk not in recorder.used, "the request's begin noted it a moment ago"

    meter.stamped_at = time.perf_counter() - USE_STAMP_INTERVAL  # the stream has flowed that long
    for _ in range(50):
        meter.token()
    assert recorder.flush()
    in_flight, stamped = row(server)
    assert in_flight == 1 and stamped is not None and stamped > LONG_AGO


@pytest.mark.django_db(transaction=True)
def test_begins_and_ends_are_written_as_one_change_per_server() -> None:
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    server = Server.objects.create(profile=profile, in_flight=0, last_used_at=LONG_AGO)
    mine = Recorder()
    assert mine.begin(profile), "the first request after a quiet spell is written before it is sent"
    Server.objects.filter(pk=server.pk).update(in_flight=1)  # as server_use_begin writes it
    assert not mine.begin(profile) and not mine.begin(profile), "the next ones within a second are not"
    mine.end(profile)
    assert row(server)[0] == 1, "nothing written before the batch"
    assert mine.flush()
    assert row(server)[0] == 2
    mine.end(profile)
    mine.end(profile)
    assert mine.flush()
    assert row(server)[0] == 0


@pytest.mark.django_db(transaction=True)
def test_in_flight_never_goes_below_zero_after_the_supervisor_released_it() -> None:
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    server = Server.objects.create(profile=profile, in_flight=0)
    mine = Recorder()
    mine.end(profile)
    assert mine.flush()
    assert row(server)[0] == 0


@pytest.mark.django_db(transaction=True)
def test_what_a_worker_still_holds_is_written_when_it_exits(make_user: Callable[..., User]) -> None:
    """gunicorn's `worker_exit` hook (and `atexit`) write the records no batch has taken yet."""
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    user = make_user()
    held = [
        {
            "user": user,
            "profile": profile,
            "model_name": "tiny",
            "api": GatewayApi.CHAT,
            "status": 200,
            "duration_ms": 1.0,
        }
    ]
    recorder.records.extend(held * 3)  # as `record` keeps them, before the batch thread's turn
    hooks = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    hooks["worker_exit"](None, None)
    assert UsageRecord.objects.filter(user=user).count() == 3
