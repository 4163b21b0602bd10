"""The counters behind the limits: exact across processes, budgets charged with what answers used,
concurrency slots freed (also by a worker that died), calendar spans in TIME_ZONE."""

from __future__ import annotations

import multiprocessing
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from accounts.limits import LimitSet
from gateway.limits.admission import Admission, CallerLimits, Refusal, admit, release, settle
from gateway.limits.store import Calendar, Store

NOON = datetime(2026, 12, 8, 12, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp()


@pytest.fixture
def at(tmp_path: Path) -> Store:
    return Store(tmp_path / "limits.sqlite3")


def person(**limits: int) -> CallerLimits:
    return CallerLimits(user_id=7, key_id=70, person=LimitSet(**limits))


def test_a_caller_without_limits_costs_no_transaction(tmp_path: Path) -> None:
    at = Store(tmp_path / "never.sqlite3")
    verdict = admit(CallerLimits(user_id=1, key_id=2, person=LimitSet()), at=at)
    assert isinstance(verdict, Admission) and not verdict.counted
    settle(verdict, prompt_tokens=5, completion_tokens=5, at=at)
    assert not (tmp_path / "never.sqlite3").exists()


def test_requests_per_minute_admits_exactly_the_limit_then_says_when_it_renews(at: Store) -> None:
    limits = person(requests_per_minute=3)
    verdicts = [admit(limits, at=at, now=NOON + i) for i in range(4)]
    assert [isinstance(v, Admission) for v in verdicts] == [True, True, True, False]
    first = verdicts[0]
    assert isinstance(first, Admission) and first.state.requests is not None
    assert (first.state.requests.limit, first.state.requests.remaining) == (3, 2)
    refusal = verdicts[3]
    assert isinstance(refusal, Refusal)
    assert (refusal.limit, refusal.holder, refusal.retry_after) == ("requests_per_minute", "person", 27)
    assert "3 requests per minute" in refusal.message and not refusal.is_budget
    assert isinstance(admit(limits, at=at, now=NOON + 30), Admission)  # the next minute


def test_a_request_handed_to_another_door_is_not_counted_twice(at: Store) -> None:
    limits = person(requests_per_minute=1)
    handed = admit(limits, at=at, now=NOON)
    assert isinstance(handed, Admission)
    release(handed, at=at, uncount=True)  # the fast path gave it to Django's view, which counts it
    again = admit(limits, at=at, now=NOON + 1)
    assert isinstance(again, Admission)
    release(again, at=at)  # served (or failed) here: it stays counted
    assert isinstance(admit(limits, at=at, now=NOON + 2), Refusal)


def test_a_budget_counts_real_usage_lets_the_crossing_answer_finish_and_refuses_the_next(at: Store) -> None:
    limits = person(tokens_per_day=100)
    crossing = admit(limits, at=at, now=NOON)
    assert isinstance(crossing, Admission)
    assert crossing.state.tokens is not None and crossing.state.tokens.remaining == 100
    settle(crossing, prompt_tokens=40, completion_tokens=90, at=at, now=NOON + 5)  # 130: over, already answered
    settle(crossing, prompt_tokens=40, completion_tokens=90, at=at, now=NOON + 5)  # once only
    refusal = admit(limits, at=at, now=NOON + 10)
    assert isinstance(refusal, Refusal) and refusal.is_budget
    assert refusal.limit == "tokens_per_day" and refusal.retry_after == 12 * 3600 - 40
    assert "daily token budget" in refusal.message and "renews at 2026-12-09 00:00 UTC" in refusal.message
    assert isinstance(admit(limits, at=at, now=NOON + 12 * 3600), Admission)  # tomorrow


def test_the_key_and_the_person_count_apart(at: Store) -> None:
    laptop = CallerLimits(
        user_id=7, key_id=1, person=LimitSet(tokens_per_month=1000), key=LimitSet(tokens_per_month=50)
    )
    ci = CallerLimits(user_id=7, key_id=2, person=LimitSet(tokens_per_month=1000))
    first = admit(laptop, at=at, now=NOON)
    assert isinstance(first, Admission) and first.state.tokens is not None and first.state.tokens.remaining == 50
    settle(first, prompt_tokens=60, completion_tokens=0, at=at, now=NOON)
    refused = admit(laptop, at=at, now=NOON)
    assert isinstance(refused, Refusal) and refused.holder == "key" and "monthly" in refused.message
    other = admit(ci, at=at, now=NOON)  # the person has 940 left
    assert isinstance(other, Admission) and other.state.tokens is not None and other.state.tokens.remaining == 940


def test_concurrency_slots_are_freed_by_settle_release_and_a_dead_worker(at: Store) -> None:
    limits = person(max_concurrent=2)
    one, two = admit(limits, at=at), admit(limits, at=at)
    assert isinstance(one, Admission) and isinstance(two, Admission)
    third = admit(limits, at=at)
    assert isinstance(third, Refusal) and third.limit == "max_concurrent" and third.retry_after == 1
    release(one, at=at)
    three = admit(limits, at=at)
    assert isinstance(three, Admission)
    settle(two, prompt_tokens=1, completion_tokens=1, at=at)
    dying = multiprocessing.get_context("fork").Process(target=_admit_and_die, args=(at.path,))
    dying.start()
    dying.join()
    assert dying.exitcode == 0
    assert isinstance(admit(limits, at=at), Admission)  # the dead worker's slot was cleared


def _admit_and_die(path: Path) -> None:
    verdict = admit(person(max_concurrent=2), at=Store(path))
    os._exit(0 if isinstance(verdict, Admission) else 1)  # never releases


def _admit_many(
    path: Path, count: int, start: multiprocessing.synchronize.Event, answered: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    own = Store(path)
    start.wait()
    answered.put(
        sum(isinstance(admit(person(requests_per_minute=500), at=own, now=NOON), Admission) for _ in range(count))
    )


def test_two_processes_sending_a_thousand_requests_against_500_get_exactly_500(at: Store) -> None:
    context = multiprocessing.get_context("fork")
    start, answered = context.Event(), context.Queue()
    workers = [context.Process(target=_admit_many, args=(at.path, 500, start, answered)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    counts = [answered.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sum(counts) == 500 and all(counts)  # both took part, none over


def test_the_calendar_renews_days_at_local_midnight_and_months_on_the_first() -> None:
    calendar = Calendar("Europe/Paris")
    late = datetime(2026, 3, 28, 23, 30, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    spans = calendar.spans(late)
    assert spans["m"] == (int(late // 60 * 60), int(late // 60 * 60) + 60)
    assert datetime.fromtimestamp(spans["d"][1], ZoneInfo("Europe/Paris")) == datetime(
        2026, 3, 29, tzinfo=ZoneInfo("Europe/Paris")
    )
    after_dst = calendar.spans(spans["d"][1] + 1)["d"]
    assert after_dst[1] - after_dst[0] == 23 * 3600  # the day the clocks go forward
    month = calendar.spans(late)["M"]
    assert datetime.fromtimestamp(month[0], ZoneInfo("Europe/Paris")).day == 1
    assert datetime.fromtimestamp(month[1], ZoneInfo("Europe/Paris")) == datetime(
        2026, 4, 1, tzinfo=ZoneInfo("Europe/Paris")
    )
