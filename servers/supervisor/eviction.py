"""Who must stop for whom, and when a server has been idle long enough: pure rules on plain
values, with no database and no process, so they are tested as functions (test_eviction.py).

The supervisor's loop reads the candidates (idle on-demand servers of this node that a request
started and that are not kept running), asks `victims` which to stop, and stops them with a
conditional update (a request that began meanwhile keeps its server)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Candidate:
    """A server that may be stopped to make room: its id, the memory it would free and when it
    was last used (or changed state, for one never used)."""

    pk: int
    memory: int
    last_use: datetime


def victims(shortfall: int, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The least recently used candidates, oldest first, until their memory covers `shortfall`
    (all of them when it cannot be covered; none when nothing is short)."""
    chosen: list[Candidate] = []
    freed = 0
    for candidate in sorted(candidates, key=lambda c: c.last_use):
        if freed >= shortfall:
            break
        chosen.append(candidate)
        freed += candidate.memory
    return chosen


def idle_due(*, idle_since: datetime | None, idle_minutes: int | None, minute: float, now: float) -> bool:
    """A server unused since `idle_since` for its profile's `idle_minutes` (None: never stopped)."""
    if idle_since is None or idle_minutes is None:
        return False
    return now - idle_since.timestamp() >= idle_minutes * minute


def use_stale(*, in_flight: int, last_used_at: datetime | None, now: float, stale_after: float) -> bool:
    """Requests counted as under way on a server unused for `stale_after` seconds: their worker
    died before counting them down, and they would keep the server from ever being idle."""
    if in_flight <= 0 or last_used_at is None:
        return False
    return now - last_used_at.timestamp() >= stale_after
