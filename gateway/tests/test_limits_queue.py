"""The fair queue: turns between people (then keys), not first come first served; limits on the
wait and on each person's queue; a client that goes away leaves at once; one queue for all the
workers of a node (real processes, woken by datagrams). Real asyncio tasks, waits on events."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.errors import GatewayError
from gateway.limits.queue import Ticket, profile_capacity, queue_enter, queue_leave, queue_snapshot
from gateway.limits.store import Store

PROFILE = 5


@pytest.fixture
def at(tmp_path: Path) -> Store:
    return Store(tmp_path / "limits.sqlite3")


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Give the event loop turns until `condition` holds (an event), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def waiting(at: Store) -> int:
    return sum(not entry.served for entry in queue_snapshot(PROFILE, at=at))


def enter(at: Store, user: int, key: int | None = None, **kwargs: object) -> asyncio.Task[Ticket]:
    return asyncio.ensure_future(
        queue_enter(profile_id=PROFILE, capacity=1, user_id=user, key_id=key, who=f"user {user}", at=at, **kwargs)  # type: ignore[arg-type]
    )


def test_capacity_defaults_to_decode_concurrency_then_the_engine_s() -> None:
    assert profile_capacity(SimpleNamespace(max_concurrent=None, decode_concurrency=4, engine="mlx_lm")) == 4
    assert profile_capacity(SimpleNamespace(max_concurrent=2, decode_concurrency=4, engine="mlx_lm")) == 2
    assert profile_capacity(SimpleNamespace(decode_concurrency=None, engine="mlx_lm")) == 32
    assert profile_capacity(SimpleNamespace(decode_concurrency=None, engine="mlx_vlm")) == 1


@pytest.mark.django_db
def test_capacity_never_queries_a_deferred_field_and_the_route_loads_it() -> None:
    from django.db.models import Q

    from gateway.routing import ROUTE_FIELDS
    from profiles.models import ServerProfile

    ServerProfile.objects.create(name="four", model="/m", port=9021, decode_concurrency=4)
    deferred = ServerProfile.objects.only("name").get(name="four")
    assert profile_capacity(deferred) == 32  # not loaded: the default, no query from an event loop
    routed = ServerProfile.objects.select_related("server", "node").only(*ROUTE_FIELDS).get(Q(name="four"))
    assert profile_capacity(routed) == 4


def test_a_freed_slot_goes_to_the_person_served_least_recently_not_the_first_in_line(at: Store) -> None:
    async def scenario() -> list[int]:
        holder = await enter(at, user=1)
        alice = [enter(at, user=1) for _ in range(4)]
        await until(lambda: waiting(at) == 4, "alice's four to wait")
        bob = enter(at, user=2)
        await until(lambda: waiting(at) == 5, "bob to wait")
        order: list[int] = []
        current, pending = holder, [*alice, bob]
        for _ in range(5):
            queue_leave(current, capacity=1)
            await until(lambda: any(task.done() for task in pending), "a grant")
            done = next(task for task in pending if task.done())
            pending.remove(done)
            order.append(2 if done is bob else 1)
            current = done.result()
        queue_leave(current, capacity=1)
        return order

    assert asyncio.run(scenario()) == [2, 1, 1, 1, 1]  # first come first served would give bob the 5th


def test_within_a_person_keys_take_turns(at: Store) -> None:
    async def scenario() -> list[int | None]:
        holder = await enter(at, user=1, key=10)
        laptop = [enter(at, user=1, key=10) for _ in range(3)]
        await until(lambda: waiting(at) == 3, "the laptop's three")
        ci = enter(at, user=1, key=11)
        await until(lambda: waiting(at) == 4, "ci's one")
        queue_leave(holder, capacity=1)
        await until(lambda: any(t.done() for t in [*laptop, ci]), "a grant")
        first = next(t for t in [*laptop, ci] if t.done())
        for task in [*laptop, ci]:
            if task is not first:
                task.cancel()
        await asyncio.gather(*laptop, ci, return_exceptions=True)
        queue_leave(first.result(), capacity=1)
        return [11 if first is ci else 10]

    assert asyncio.run(scenario()) == [11]  # ci came last but its key had not been served
    assert queue_snapshot(PROFILE, at=at) == []


def test_a_client_that_goes_away_leaves_the_queue_at_once_and_its_turn_passes_on(at: Store) -> None:
    async def scenario() -> None:
        holder = await enter(at, user=1)
        gone, next_one = enter(at, user=2), enter(at, user=3)
        await until(lambda: waiting(at) == 2, "two waiters")
        gone.cancel()
        await until(lambda: waiting(at) == 1, "the cancelled one to leave")
        assert [entry.who for entry in queue_snapshot(PROFILE, at=at)] == ["user 1", "user 3"]
        queue_leave(holder, capacity=1)
        queue_leave(await next_one, capacity=1)

    asyncio.run(scenario())
    assert queue_snapshot(PROFILE, at=at) == []


def test_past_the_wait_a_503_and_past_a_person_s_queue_a_429_both_with_retry_after(at: Store) -> None:
    async def scenario() -> None:
        holder = await enter(at, user=1)
        with pytest.raises(GatewayError) as timed_out:
            await enter(at, user=2, timeout=0.05)
        assert (timed_out.value.status, timed_out.value.kind, timed_out.value.retry_after) == (503, "queue_timeout", 5)
        queued = [enter(at, user=3, max_per_person=2) for _ in range(2)]
        await until(lambda: waiting(at) == 2, "two of user 3")
        with pytest.raises(GatewayError) as full:
            await enter(at, user=3, max_per_person=2)
        assert (full.value.status, full.value.kind) == (429, "queue_full") and full.value.retry_after
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        queue_leave(holder, capacity=1)

    asyncio.run(scenario())
    assert queue_snapshot(PROFILE, at=at) == []


def _wait_in_another_worker(path: Path, user: int, report: Connection) -> None:
    async def wait() -> None:
        ticket = await queue_enter(profile_id=PROFILE, capacity=1, user_id=user, key_id=None, at=Store(path))
        report.send(("granted", os.getpid()))
        report.recv()  # hold the slot until told
        queue_leave(ticket, capacity=1)

    asyncio.run(wait())


def test_one_queue_for_every_worker_a_grant_wakes_the_other_process_and_takes_turns(at: Store) -> None:
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    worker = context.Process(target=_wait_in_another_worker, args=(at.path, 2, theirs))

    async def scenario() -> None:
        holder = await enter(at, user=1)
        worker.start()
        await until(lambda: waiting(at) == 1, "the other worker's request to wait")
        alice = enter(at, user=1)
        await until(lambda: waiting(at) == 2, "alice's second")
        queue_leave(holder, capacity=1)
        loop = asyncio.get_running_loop()
        assert (await loop.run_in_executor(None, ours.recv))[0] == "granted"  # the datagram woke it
        assert not alice.done()
        ours.send("leave")
        queue_leave(await alice, capacity=1)

    asyncio.run(scenario())
    worker.join(timeout=30)
    assert worker.exitcode == 0


def _hold_and_die(path: Path) -> None:
    async def hold() -> None:
        await queue_enter(profile_id=PROFILE, capacity=1, user_id=9, key_id=None, at=Store(path))
        os._exit(0)

    asyncio.run(hold())


def test_the_slot_of_a_worker_that_died_is_taken_back(at: Store) -> None:
    dying = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(at.path,))
    dying.start()
    dying.join(timeout=30)
    assert [entry.served for entry in queue_snapshot(PROFILE, at=at)] == [True]

    async def scenario() -> None:
        queue_leave(await asyncio.wait_for(enter(at, user=1), 5), capacity=1)

    asyncio.run(scenario())


def test_a_grant_wakes_a_waiter_on_another_event_loop_of_the_same_worker(
    at: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under WSGI (`runserver`) each request has an event loop of its own: the wake-up still comes."""
    monkeypatch.setattr("gateway.limits.queue.RECHECK", 600.0)  # only the wake-up can grant in time
    import threading

    granted = threading.Event()

    def other_loop() -> None:
        async def wait() -> None:
            queue_leave(await enter(at, user=2), capacity=1)
            granted.set()

        asyncio.run(wait())

    async def scenario() -> None:
        holder = await enter(at, user=1)
        thread = threading.Thread(target=other_loop)
        thread.start()
        await until(lambda: waiting(at) == 1, "the other loop's request to wait")
        queue_leave(holder, capacity=1)
        assert await asyncio.get_running_loop().run_in_executor(None, granted.wait, 30)
        thread.join(30)

    asyncio.run(scenario())


def _wait_and_die(path: Path, report: Connection) -> None:
    async def wait() -> None:
        task = asyncio.ensure_future(
            queue_enter(profile_id=PROFILE, capacity=1, user_id=9, key_id=None, at=Store(path))
        )
        at = Store(path)
        while not any(not entry.served for entry in queue_snapshot(PROFILE, at=at)):
            await asyncio.sleep(0.001)
        report.send("waiting")
        os._exit(0)  # dies waiting: its row stays
        await task

    asyncio.run(wait())


def test_a_request_whose_worker_died_while_waiting_is_passed_over(at: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.limits.queue.RECHECK", 600.0)  # the grant must come at once
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()

    async def scenario() -> None:
        holder = await enter(at, user=1)
        dying = context.Process(target=_wait_and_die, args=(at.path, theirs))
        dying.start()
        assert await asyncio.get_running_loop().run_in_executor(None, ours.recv) == "waiting"
        dying.join(30)
        queue_leave(holder, capacity=1)  # the freed slot is not given to the dead worker's request
        assert queue_snapshot(PROFILE, at=at) == []
        holder = await enter(at, user=1)
        dying = context.Process(target=_wait_and_die, args=(at.path, theirs))
        dying.start()
        assert await asyncio.get_running_loop().run_in_executor(None, ours.recv) == "waiting"
        dying.join(30)
        alive = enter(at, user=2)  # someone must wait: the dead worker's request is forgotten
        await until(lambda: [e.who for e in queue_snapshot(PROFILE, at=at)] == ["user 1", "user 2"], "one waiter")
        queue_leave(holder, capacity=1)
        queue_leave(await asyncio.wait_for(alive, 30), capacity=1)

    asyncio.run(scenario())
    assert queue_snapshot(PROFILE, at=at) == []
