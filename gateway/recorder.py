"""What the gateway writes about its requests, kept in memory and written in batches by one thread
per process: usage records (one INSERT for many), each server's `in_flight` and `last_used_at`
(one UPDATE per server for many requests), each key's `last_used_at`. A request never waits for
these writes, and one worker's writes do not queue behind each other on SQLite's write lock.

Nothing is lost when the process ends: gunicorn's `worker_exit` hook (gunicorn.conf.py) and
`atexit` write what is left.

The supervisor must never stop a server a request is on its way to. It stops a server idle for
minutes (its `last_used_at` unchanged), or, to make room, an on-demand server with no request in
flight. So a request is counted before it is sent (`begin` returns True: the caller writes it)
when its server may be stopped to make room, or when this process has not written the server's
use for SYNC_BEGIN_AFTER (its `last_used_at` may then look idle); otherwise it is counted in the
next batch, within BATCH_WINDOW.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from datetime import datetime
from typing import Any

from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, Model
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import User
from gateway.keys import LAST_USED_RESOLUTION
from gateway.models import ApiKey, UsageRecord
from profiles.models import ServerProfile
from servers.models import Server

log = logging.getLogger(__name__)
BATCH_WINDOW = 0.1  # seconds between a request's end and its record's write, at most (if the database is up)
SYNC_BEGIN_AFTER = 1.0  # seconds: a server this process used less recently is counted in use before sending
RETRY_AFTER = 1.0  # seconds before a failed batch is written again


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # the buffers
        self.writing = threading.Lock()  # one batch at a time (the thread's, or the last one at exit)
        self.wake = threading.Event()
        self.urgent = threading.Event()  # a batch that should not wait for BATCH_WINDOW
        self.records: list[dict[str, Any]] = []
        self.in_flight: dict[int, int] = {}  # server's profile id → requests begun minus ended
        self.used: set[int] = set()  # profile ids whose server was used since the last batch
        self.keys: dict[int, datetime] = {}
        self.written_use: dict[int, float] = {}  # profile id → when this process last wrote its use
        self.thread: threading.Thread | None = None

    def begin(self, profile: ServerProfile) -> bool:
        """Count a request to the profile's server. True: the caller must write it now
        (`servers.services.server_use_begin`), before the request is sent."""
        now = time.monotonic()
        if _room_victim(profile) or now - self.written_use.get(profile.pk, float("-inf")) >= SYNC_BEGIN_AFTER:
            self.written_use[profile.pk] = now
            return True
        self._change(profile.pk, +1)
        return False

    def still(self, profile: ServerProfile) -> None:
        """A request to the profile's server is still being answered (a long stream)."""
        self._change(profile.pk, 0)

    def end(self, profile: ServerProfile) -> None:
        """The request ended. A server that may be stopped to make room is told at once: the
        next request, for another model, may need that room now."""
        if _room_victim(profile):
            self.urgent.set()
        self._change(profile.pk, -1)

    def key_used(self, key: ApiKey) -> None:
        """Stamp the key's last use, at most once per LAST_USED_RESOLUTION."""
        now = timezone.now()
        if key.last_used_at is not None and now - key.last_used_at <= LAST_USED_RESOLUTION:
            return
        key.last_used_at = now
        with self.lock:
            self.keys[key.pk] = now
        self._wake()

    def record(self, fields: dict[str, Any]) -> None:
        with self.lock:
            self.records.append(fields)
        self._wake()

    def _change(self, profile_id: int, delta: int) -> None:
        with self.lock:
            self.in_flight[profile_id] = self.in_flight.get(profile_id, 0) + delta
            self.used.add(profile_id)
        self._wake()

    def _wake(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="gateway-recorder", daemon=True)
            self.thread.start()
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.urgent.wait(BATCH_WINDOW)  # what else ends meanwhile goes in the same batch
            self.wake.clear()
            self.urgent.clear()
            if not self.flush():
                time.sleep(RETRY_AFTER)
                self.wake.set()

    def flush(self) -> bool:
        """Write everything kept so far; False (and kept for the next try) when the database failed."""
        with self.writing:
            with self.lock:
                records, in_flight, used, keys = self.records, self.in_flight, self.used, self.keys
                self.records, self.in_flight, self.used, self.keys = [], {}, set(), {}
            if not (records or used or keys):
                return True
            try:
                close_old_connections()
                _write(records, in_flight, used, keys)
            except Exception:
                log.exception("could not write %d usage records; trying again", len(records))
                self._keep(records, in_flight, used, keys)
                return False
            now = time.monotonic()
            for profile_id in used:
                self.written_use[profile_id] = now
            return True

    def discard(self) -> None:
        """Forget what is not written yet (a test's requests, before the next test)."""
        with self.writing, self.lock:
            self.records, self.in_flight, self.used, self.keys = [], {}, set(), {}
            self.written_use.clear()

    def _keep(
        self, records: list[dict[str, Any]], in_flight: dict[int, int], used: set[int], keys: dict[int, datetime]
    ) -> None:
        with self.lock:
            self.records[:0] = records
            for profile_id, delta in in_flight.items():
                self.in_flight[profile_id] = self.in_flight.get(profile_id, 0) + delta
            self.used |= used
            self.keys = {**keys, **self.keys}


def _room_victim(profile: ServerProfile) -> bool:
    """Whether the supervisor may stop the profile's server to make room for another."""
    return bool(profile.on_demand and not profile.keep_running)


def _write(records: list[dict[str, Any]], in_flight: dict[int, int], used: set[int], keys: dict[int, datetime]) -> None:
    now = timezone.now()
    if records:
        _records_write(records)
    for profile_id in used:
        delta = in_flight.get(profile_id, 0)
        servers = Server.objects.filter(profile_id=profile_id)
        if delta:
            servers.update(in_flight=Greatest(F("in_flight") + delta, 0), last_used_at=now)
        else:  # still streaming, or begun and ended within the batch
            servers.update(last_used_at=now)
    for key_id, used_at in keys.items():
        ApiKey.objects.filter(pk=key_id).update(last_used_at=used_at)


def _records_write(records: list[dict[str, Any]]) -> None:
    """One INSERT for all; should a record's person, key or profile have been deleted since its
    request (an IntegrityError for the batch), each on its own, without what is gone."""
    try:
        with transaction.atomic():
            UsageRecord.objects.bulk_create([UsageRecord(**fields) for fields in records])
    except IntegrityError:
        for fields in records:
            try:
                with transaction.atomic():
                    UsageRecord.objects.create(**fields)
            except IntegrityError:
                UsageRecord.objects.create(**{**fields, **_gone(fields)})


def _gone(fields: dict[str, Any]) -> dict[str, None]:
    """The record's links to rows deleted since, as None."""
    links: dict[str, type[Model]] = {"user": User, "api_key": ApiKey, "profile": ServerProfile}
    return {
        name: None
        for name, model in links.items()
        if fields.get(name) is not None and not model._default_manager.filter(pk=fields[name].pk).exists()
    }


recorder = Recorder()
atexit.register(recorder.flush)
