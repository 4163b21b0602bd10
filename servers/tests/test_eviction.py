"""The eviction rules alone: plain values in, decisions out (no database, no process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servers.supervisor.eviction import Candidate, idle_due, use_stale, victims

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GiB = 1024**3


def candidate(pk: int, *, gib: int, minutes_ago: int) -> Candidate:
    return Candidate(pk=pk, memory=gib * GiB, last_use=T0 - timedelta(minutes=minutes_ago))


def test_the_least_recently_used_go_first_until_the_shortfall_is_covered() -> None:
    recent, old, oldest = (
        candidate(1, gib=4, minutes_ago=1),
        candidate(2, gib=2, minutes_ago=30),
        candidate(3, gib=2, minutes_ago=60),
    )
    assert victims(3 * GiB, [recent, old, oldest]) == [oldest, old]
    assert victims(1, [recent, old, oldest]) == [oldest]


def test_nothing_short_stops_nothing_and_a_shortfall_too_big_stops_every_candidate() -> None:
    pool = [candidate(1, gib=1, minutes_ago=5), candidate(2, gib=1, minutes_ago=9)]
    assert victims(0, pool) == []
    assert victims(-GiB, pool) == []
    assert [c.pk for c in victims(100 * GiB, pool)] == [2, 1]
    assert victims(GiB, []) == []


def test_a_server_is_idle_after_its_minutes_and_never_without_them() -> None:
    since = T0
    now = T0.timestamp()
    assert not idle_due(idle_since=since, idle_minutes=5, minute=60, now=now + 299)
    assert idle_due(idle_since=since, idle_minutes=5, minute=60, now=now + 300)
    assert not idle_due(idle_since=since, idle_minutes=None, minute=60, now=now + 10**9)
    assert not idle_due(idle_since=None, idle_minutes=5, minute=60, now=now + 10**9)


def test_requests_left_counted_on_a_long_unused_server_are_stale() -> None:
    now = T0.timestamp()
    assert use_stale(in_flight=2, last_used_at=T0, now=now + 3600, stale_after=3600)
    assert not use_stale(in_flight=2, last_used_at=T0, now=now + 3599, stale_after=3600)
    assert not use_stale(in_flight=0, last_used_at=T0, now=now + 10**9, stale_after=3600)
    assert not use_stale(in_flight=1, last_used_at=None, now=now + 10**9, stale_after=3600)
