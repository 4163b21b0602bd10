"""The fair queue in front of each model server: a profile serves `capacity` requests at once; the
others wait, and a freed slot goes to the person served least recently among those waiting (then,
within that person, to the key served least recently, then to their oldest request): turns
between people, not first come first served, so one person's agent with 32 requests in flight
delays another person's chat by about one request, not 32.

One queue per profile for the whole node: its rows live in the node-local store (store.py), so
every web worker sees the same queue and slots. A slot freed in one worker is granted in the same
transaction that frees it; the waiter, perhaps in another worker, is woken at once by a datagram
on its worker's UNIX socket (or directly, in the same worker). A waiter whose client goes away
(its task is cancelled) leaves at once; one that waits past `timeout` gets a 503, a person with
`max_per_person` requests waiting already gets a 429, both with Retry-After. Slots of a worker
that died are taken back when someone would otherwise wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from gateway.errors import GatewayError
from gateway.limits.store import Store, pid_alive, store, store_path

QUEUE_FULL_RETRY_AFTER = 2
RECHECK = 2.0  # seconds between a waiter's own looks at the queue (the datagrams make them rare)
QUEUE_TIMEOUT_RETRY_AFTER = 5
UNBATCHED_ENGINES = frozenset({"mlx_vlm"})
MLX_LM_DECODE_CONCURRENCY = 32  # mlx_lm.server's own default (profiles/argv.py)


def profile_capacity(profile: Any) -> int:
    """Requests a profile serves at once: its `max_concurrent` if set, else its decode
    concurrency, else the engine's (mlx_lm batches 32; an engine that does not batch, 1). Reads
    only what the profile has loaded (the request path runs in an event loop, where a deferred
    field would be a query): the route's query must load these fields."""
    loaded = profile.__dict__ if hasattr(profile, "__dict__") else {}
    for value in (loaded.get("max_concurrent"), loaded.get("decode_concurrency")):
        if value:
            return int(value)
    return 1 if loaded.get("engine", "mlx_lm") in UNBATCHED_ENGINES else MLX_LM_DECODE_CONCURRENCY


@dataclass
class Ticket:
    """A granted slot; `queue_leave` frees it (once)."""

    id: int
    profile_id: int
    waited: float  # seconds spent in the queue
    at: Store
    left: bool = False


@dataclass(frozen=True)
class Waiting:
    who: str
    since: float
    served: bool  # holds a slot (else waits)


class _Waker:
    """This worker's datagram socket, read by a thread of its own, and its waiters' futures keyed by
    queue row id, each with the event loop it belongs to (one per worker under ASGI; one per
    request under WSGI's `runserver`, hence a thread rather than one loop's reader)."""

    def __init__(self, sockets: Path) -> None:
        self.pid = os.getpid()
        self.waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}
        sockets.mkdir(exist_ok=True)
        self.path = sockets / str(self.pid)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead worker's, whose pid this one reuses
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        threading.Thread(target=self._read, name="fair-queue-waker", daemon=True).start()

    def _read(self) -> None:
        while True:
            data = self.sock.recv(64)
            with contextlib.suppress(ValueError):
                self.granted(int(data))

    def granted(self, row: int) -> None:
        entry = self.waiting.get(row)
        if entry is not None:
            loop, future = entry
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_wakers: dict[Path, _Waker] = {}
_wakers_lock = threading.Lock()


def _waker(at: Store) -> _Waker:
    with _wakers_lock:
        waker = _wakers.get(at.path)
        if waker is None or waker.pid != os.getpid():  # none yet, or the parent's before a fork
            waker = _wakers[at.path] = _Waker(at.path.with_suffix(".sockets"))
        return waker


def _notify(at: Store, granted: list[tuple[int, int]]) -> None:
    """Wake each granted waiter: in this worker directly, in another through its socket."""
    for row, pid in granted:
        waker = _wakers.get(at.path)
        if pid == os.getpid() and waker is not None and waker.pid == pid:
            waker.granted(row)
            continue
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(str(row).encode(), str(at.path.with_suffix(".sockets") / str(pid)))


def _grant(conn: sqlite3.Connection, profile_id: int, capacity: int, now: float) -> list[tuple[int, int]]:
    """Give the free slots to the waiters whose turn it is; returns (row, pid) of each granted."""
    rows = conn.execute(
        "SELECT id, user_id, key_id, pid, enqueued, granted FROM queue WHERE profile_id = ?", (profile_id,)
    ).fetchall()
    if sum(row[5] is not None for row in rows) >= capacity and any(row[5] is None for row in rows):
        # someone must wait: first forget the rows of workers that died (served or waiting)
        alive = {pid: pid_alive(pid) for pid in {row[3] for row in rows}}
        conn.executemany("DELETE FROM queue WHERE id = ?", [(row[0],) for row in rows if not alive[row[3]]])
        rows = [row for row in rows if alive[row[3]]]
    waiting = [row for row in rows if row[5] is None]
    if not waiting:
        return []
    serving = [row for row in rows if row[5] is not None]
    free = capacity - len(serving)
    if free <= 0:
        return []
    turns = dict(conn.execute("SELECT subject, turn FROM turns WHERE profile_id = ?", (profile_id,)).fetchall())
    last = max(turns.values(), default=0)
    granted: list[tuple[int, int]] = []
    while waiting and free > 0:
        person = min(waiting, key=lambda row: (turns.get(f"u{row[1]}", 0), row[4]))[1]
        theirs = [row for row in waiting if row[1] == person]
        chosen = min(theirs, key=lambda row: (turns.get(f"k{row[2]}", 0), row[4]))
        waiting.remove(chosen)
        if chosen[3] != os.getpid() and not pid_alive(chosen[3]):  # its worker died while it waited
            conn.execute("DELETE FROM queue WHERE id = ?", (chosen[0],))
            continue
        last += 1
        turns[f"u{person}"] = turns[f"k{chosen[2]}"] = last
        conn.executemany(
            "INSERT INTO turns (profile_id, subject, turn) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET turn = excluded.turn",
            [(profile_id, f"u{person}", last), (profile_id, f"k{chosen[2]}", last)],
        )
        conn.execute("UPDATE queue SET granted = ? WHERE id = ?", (now, chosen[0]))
        granted.append((chosen[0], chosen[3]))
        free -= 1
    return granted


async def queue_enter(
    *,
    profile_id: int,
    capacity: int,
    user_id: int,
    key_id: int | None,
    who: str = "",
    timeout: float | None = None,
    max_per_person: int | None = None,
    at: Store | None = None,
) -> Ticket:
    """Wait for a slot of the profile's server, taking turns; GatewayError 429 (this person has
    too many requests waiting) or 503 (waited `timeout` seconds), both with Retry-After."""
    at = at or store()
    timeout = settings.MLXM_QUEUE_TIMEOUT if timeout is None else timeout
    max_per_person = settings.MLXM_QUEUE_MAX_PER_PERSON if max_per_person is None else max_per_person
    row, began = secrets.randbits(62), time.time()
    waker, loop = _waker(at), asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    waker.waiting[row] = (loop, future)
    try:
        with at.transaction() as conn:
            (queued,) = conn.execute(
                "SELECT count(*) FROM queue WHERE profile_id = ? AND user_id = ? AND granted IS NULL",
                (profile_id, user_id),
            ).fetchone()
            if queued >= max_per_person:
                raise GatewayError(
                    429,
                    f"You have {queued} requests waiting for this model already (at most {max_per_person}): "
                    "retry when some have been answered.",
                    retry_after=QUEUE_FULL_RETRY_AFTER,
                    kind="queue_full",
                )
            conn.execute(
                "INSERT INTO queue (id, profile_id, user_id, key_id, pid, enqueued, who) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row, profile_id, user_id, key_id, os.getpid(), began, who),
            )
            granted = _grant(conn, profile_id, capacity, began)
        _notify(at, [grant for grant in granted if grant[0] != row])
        if all(grant[0] != row for grant in granted):
            await _wait(future, row, profile_id, capacity, timeout, at)
        return Ticket(id=row, profile_id=profile_id, waited=time.time() - began, at=at)
    finally:
        waker.waiting.pop(row, None)


async def _wait(
    future: asyncio.Future[None], row: int, profile_id: int, capacity: int, timeout: float, at: Store
) -> None:
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(future), min(RECHECK, max(0.0, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
            if _recheck(row, profile_id, capacity, at):
                return
    except TimeoutError:
        if _leave_waiting(row, profile_id, capacity, at):
            raise GatewayError(
                503,
                f"The model is busy: this request waited {timeout:g} s for its turn. Retry shortly.",
                retry_after=QUEUE_TIMEOUT_RETRY_AFTER,
                kind="queue_timeout",
            ) from None
        # granted in the instant the wait ran out: take the slot
    except asyncio.CancelledError:  # the client went away: leave at once (and pass on a slot just granted)
        _leave_waiting(row, profile_id, capacity, at, even_granted=True)
        raise


def _recheck(row: int, profile_id: int, capacity: int, at: Store) -> bool:
    """A waiter's look every RECHECK seconds, for what no datagram announces (a worker that died
    holding a slot, a datagram lost): grant what is free; True when this row holds a slot."""
    with at.transaction() as conn:
        granted = _grant(conn, profile_id, capacity, time.time())
        found = conn.execute("SELECT granted FROM queue WHERE id = ?", (row,)).fetchone()
    _notify(at, [grant for grant in granted if grant[0] != row])
    return found is not None and found[0] is not None


def _leave_waiting(row: int, profile_id: int, capacity: int, at: Store, *, even_granted: bool = False) -> bool:
    """Take the row out; True when it was still waiting (not granted)."""
    with at.transaction() as conn:
        found = conn.execute("SELECT granted FROM queue WHERE id = ?", (row,)).fetchone()
        if found is None or (found[0] is not None and not even_granted):
            return found is None
        conn.execute("DELETE FROM queue WHERE id = ?", (row,))
        granted = _grant(conn, profile_id, capacity, time.time()) if found[0] is not None else []
    _notify(at, granted)
    return found[0] is None


def queue_leave(ticket: Ticket, *, capacity: int) -> None:
    """Free the slot (the answer is done, or failed); the next in turn gets it. Once."""
    if ticket.left:
        return
    ticket.left = True
    with ticket.at.transaction() as conn:
        conn.execute("DELETE FROM queue WHERE id = ?", (ticket.id,))
        granted = _grant(conn, ticket.profile_id, capacity, time.time())
    _notify(ticket.at, granted)


def queue_snapshot(profile_id: int, *, at: Store | None = None) -> list[Waiting]:
    """Who is served and who waits for the profile, and since when (the card, /metrics)."""
    conn = (at or store()).connection()
    rows = conn.execute(
        "SELECT who, COALESCE(granted, enqueued), granted IS NOT NULL FROM queue WHERE profile_id = ? ORDER BY enqueued",
        (profile_id,),
    ).fetchall()
    return [Waiting(who=who, since=since, served=bool(served)) for who, since, served in rows]


@dataclass(frozen=True)
class QueueView:
    """One profile's queue as the card and /metrics show it."""

    serving: int
    waiting: int
    oldest_wait: float  # seconds the longest-waiting request has waited (0: none waits)
    by_person: tuple[tuple[str, int], ...]  # who waits, how many (most first)


def queue_views(*, at: Store | None = None, now: float | None = None) -> dict[int, QueueView]:
    """Every profile with someone served or waiting on this node (one read of the store)."""
    if at is None and not store_path().exists():
        return {}
    now = time.time() if now is None else now
    rows = (at or store()).connection().execute("SELECT profile_id, who, enqueued, granted FROM queue").fetchall()
    views: dict[int, QueueView] = {}
    for profile_id in {row[0] for row in rows}:
        theirs = [row for row in rows if row[0] == profile_id]
        waiting = [row for row in theirs if row[3] is None]
        by_person: dict[str, int] = {}
        for row in waiting:
            by_person[row[1]] = by_person.get(row[1], 0) + 1
        views[profile_id] = QueueView(
            serving=len(theirs) - len(waiting),
            waiting=len(waiting),
            oldest_wait=max((now - row[2] for row in waiting), default=0.0),
            by_person=tuple(sorted(by_person.items(), key=lambda item: (-item[1], item[0]))),
        )
    return views
