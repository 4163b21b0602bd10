"""Issue 29's limits and fair queue, measured on their own store (what gateway/relay.py's `answer`
adds to every request; bench_fairness measures through the whole app):

- what admit + settle (every limit set, a key and a person) and the queue's enter + leave cost a
  request, against nothing (goal: at most 0.3 ms more);
- exactness: 1,000 checks from 2 processes against a 500-request limit: exactly 500 admitted."""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from accounts.limits import LimitSet
from bench.common import Result, summarize
from gateway.limits.admission import Admission, CallerLimits, admit, settle
from gateway.limits.queue import queue_enter, queue_leave
from gateway.limits.store import Store

ROUNDS = 3000
EVERY_LIMIT = CallerLimits(
    user_id=1,
    key_id=2,
    person=LimitSet(10**9, 10**9, 10**9, 10**9, 10**6),
    key=LimitSet(10**9, 10**9, 10**9, 10**9, 10**6),
)


def _cost(at: Store) -> tuple[list[float], list[float]]:
    async def measure() -> tuple[list[float], list[float]]:
        limited: list[float] = []
        bare: list[float] = []
        for _ in range(ROUNDS):
            began = time.perf_counter()
            verdict = admit(EVERY_LIMIT, at=at)
            ticket = await queue_enter(profile_id=1, capacity=8, user_id=1, key_id=2, at=at)
            queue_leave(ticket, capacity=8)
            assert isinstance(verdict, Admission)
            settle(verdict, prompt_tokens=20, completion_tokens=30, at=at)
            middle = time.perf_counter()
            bare.append((time.perf_counter() - middle) * 1000)
            limited.append((middle - began) * 1000)
        return limited, bare

    return asyncio.run(measure())


def _admit_many(path: Path, start: Event, answered: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    at, limits = Store(path), CallerLimits(user_id=9, key_id=None, person=LimitSet(requests_per_minute=500))
    start.wait()
    answered.put(sum(isinstance(admit(limits, at=at), Admission) for _ in range(500)))


def _exactness(path: Path) -> int:
    context = multiprocessing.get_context("fork")
    start, answered = context.Event(), context.Queue()
    workers = [context.Process(target=_admit_many, args=(path, start, answered)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    total = sum(answered.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as folder:
        at = Store(Path(folder) / "limits.sqlite3")
        limited, bare = _cost(at)
        admitted = _exactness(Path(folder) / "exact.sqlite3")
    return [
        summarize(
            "limits + fair queue: added per request (store only)",
            "ms",
            limited,
            baseline="no limits, no queue",
            baseline_samples=bare,
            goal=0.3,
            note="admit + queue enter + leave + settle, every limit set on a key and its person",
        ),
        summarize(
            "requests admitted beyond a 500 limit (1,000 from 2 processes)",
            "requests",
            [float(abs(admitted - 500))],
            baseline="exact: 0",
            baseline_samples=[0.0],
            goal=0.0,
            note=f"{admitted} admitted",
        ),
    ]
