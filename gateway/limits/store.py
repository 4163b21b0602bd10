"""The node-local counter store: one SQLite file in the data directory that every web worker of
this node opens, so the counters are one source of truth however many workers there are (a copy
per worker could not be exact), and a check is a local transaction (tens of microseconds), never a
round trip to the shared database.

WAL lets readers go on while one writer writes; `synchronous=OFF` skips the fsync (a power cut
may lose the last counts, never corrupt the file: a limit is not a ledger; the usage records are
the ledger). Each connection belongs to one thread of one process (opened again after a fork).

Tables:
- `usage`: per subject (`u<user id>`, `k<key id>`), span (`m` minute, `d` day, `M` month) and the
  span's start (epoch seconds): requests and tokens counted here, and those the other nodes
  reported (`remote_*`, written by gateway/limits/sync.py every few seconds).
- `leases`: one row per request under way for a subject with a concurrency limit, with the pid of
  the worker serving it (a worker that died leaves rows that the next refused check clears).
- `queue`, `turns`: the fair queue (gateway/limits/queue.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    subject TEXT NOT NULL, span TEXT NOT NULL, start INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
    remote_requests INTEGER NOT NULL DEFAULT 0, remote_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, span, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, subject TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_subject ON leases (subject);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY, profile_id INTEGER NOT NULL, user_id INTEGER NOT NULL, key_id INTEGER,
    pid INTEGER NOT NULL, enqueued REAL NOT NULL, granted REAL, who TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS queue_profile ON queue (profile_id, granted);
CREATE TABLE IF NOT EXISTS turns (
    profile_id INTEGER NOT NULL, subject TEXT NOT NULL, turn INTEGER NOT NULL,
    PRIMARY KEY (profile_id, subject)
) WITHOUT ROWID;
"""
SPANS = ("m", "d", "M")


def store_path() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "limits.sqlite3"


class Store:
    """The file at `path`, one connection per thread (and per process: a fork opens its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.executescript(SCHEMA)
            local.conn, local.pid = conn, os.getpid()
        conn_: sqlite3.Connection = local.conn
        return conn_

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock up front, so a check and its count are one step for
        every worker (no two workers both see the last request of a minute as free)."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def store() -> Store:
    """This node's store (the data directory's file)."""
    path = store_path()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = Store(path)
        return _stores[path]


class Calendar:
    """The starts and ends of the current minute, day and month (epoch seconds) in TIME_ZONE: a
    budget renews at local midnight and on the 1st. Day and month are worked out once per day."""

    def __init__(self, zone: str | None = None) -> None:
        self.zone = ZoneInfo(zone or settings.TIME_ZONE)
        self._day: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # day start, end, month start, end

    def spans(self, now: float) -> dict[str, tuple[int, int]]:
        """span -> (start, end) containing `now`."""
        day_start, day_end, month_start, month_end = self._day
        if not day_start <= now < day_end:
            self._day = day_start, day_end, month_start, month_end = self._work_out(now)
        minute = int(now // 60 * 60)
        return {
            "m": (minute, minute + 60),
            "d": (int(day_start), int(day_end)),
            "M": (int(month_start), int(month_end)),
        }

    def _work_out(self, now: float) -> tuple[float, float, float, float]:
        local = datetime.fromtimestamp(now, self.zone)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        next_day = (day + timedelta(days=1, hours=3)).replace(hour=0)  # a 23- or 25-hour day too
        month = day.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        return day.timestamp(), next_day.timestamp(), month.timestamp(), next_month.timestamp()


def pid_alive(pid: int) -> bool:
    """Whether the process still runs (a worker that died leaves slots and leases to take back)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_calendar: Calendar | None = None


def spans_now(now: float) -> dict[str, tuple[int, int]]:
    """The current spans in TIME_ZONE (one calendar per process)."""
    global _calendar
    if _calendar is None:
        _calendar = Calendar()
    return _calendar.spans(now)


def used_now(conn: sqlite3.Connection, subject: str, spans: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """span -> (requests, tokens) so far, this node's and the others' (one indexed read)."""
    rows = conn.execute(
        "SELECT span, requests + remote_requests, tokens + remote_tokens FROM usage "
        "WHERE subject = ? AND ((span = 'm' AND start = ?) OR (span = 'd' AND start = ?) OR (span = 'M' AND start = ?))",
        (subject, spans["m"][0], spans["d"][0], spans["M"][0]),
    ).fetchall()
    used = dict.fromkeys(SPANS, (0, 0))
    used.update({span: (requests, tokens) for span, requests, tokens in rows})
    return used
