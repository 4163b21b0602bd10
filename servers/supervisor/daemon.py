"""The supervisor process around the reconcile loop: one instance per data directory (a lock),
a wake-up socket the web side nudges (and, on PostgreSQL, a LISTEN for this node's name), signals
that ask for a clean stop, and riding out a database that has gone away."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import socket
import time
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import Error, connection

from core.wakeup import WAKE_CHANNEL, wake_socket_path
from servers.supervisor.loop import DATABASE_AWAY, Supervisor

log = logging.getLogger("mlxmanager.supervisor")


class AlreadyRunning(Exception):
    pass


def lock_path() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "supervisor.lock"


class InstanceLock:
    """An exclusive fcntl lock on a file in the data directory, held for the whole life of the
    process (shutdown included) and released by the kernel when it exits, even after kill -9."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"Another supervisor (PID {holder}) is already running for {self.path.parent}; "
                "only one may run per data directory."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.file = handle

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class WakeSocket:
    """The datagram socket `core.wakeup.wake_supervisor` writes to, plus a self-pipe that
    signals (SIGTERM, SIGINT, SIGCHLD) write to, so `wait` returns at once for either; and a pipe
    that probes' threads write to (`answered`) when an answer is in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)  # a leftover from a supervisor that was killed; we hold the lock
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.signal_r, self.signal_w = socket.socketpair()
        self.signal_r.setblocking(False)
        self.signal_w.setblocking(False)
        self.answers_r, self.answers_w = socket.socketpair()
        self.answers_r.setblocking(False)
        self.answers_w.setblocking(False)
        self.signals_installed = False

    def install_signal_wakeup(self) -> None:
        signal.set_wakeup_fd(self.signal_w.fileno(), warn_on_full_buffer=False)
        self.signals_installed = True

    def answered(self) -> None:
        """A probe's answer is in (called from its thread)."""
        with suppress(BlockingIOError, OSError):  # a full pipe wakes the loop just as well
            self.answers_w.send(b"a")

    def wait(self, timeout: float, listener: NotifyListener | None = None) -> bool:
        """Sleep up to `timeout` seconds; True when woken by the web side, a signal or (with a
        `listener`) a NOTIFY for this node. False for a timeout or a probe's answer alone: those
        need no pass over every server. A NOTIFY for another node sleeps on."""
        deadline = time.monotonic() + timeout
        while True:
            sockets: list[Any] = [self.sock, self.signal_r, self.answers_r]
            if listener is not None and listener.connected:
                sockets.append(listener)
            ready, _, _ = select.select(sockets, [], [], max(0.0, deadline - time.monotonic()))
            woke = False
            for readable in ready:
                if readable is listener:
                    woke = listener.drain() or woke
                    continue
                woke = woke or readable is not self.answers_r
                try:
                    while readable.recv(512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            answered = self.answers_r in ready
            if woke or answered or not ready or time.monotonic() >= deadline:
                return woke

    def close(self) -> None:
        if self.signals_installed:
            signal.set_wakeup_fd(-1)
        self.sock.close()
        self.signal_r.close()
        self.signal_w.close()
        self.answers_r.close()
        self.answers_w.close()
        self.path.unlink(missing_ok=True)


class NotifyListener:
    """On PostgreSQL: `LISTEN` on the wake-up channel over a connection of its own (autocommit,
    outside Django's), whose socket the wait selects on. Only NOTIFYs naming this node count.
    When the database goes away the connection is dropped, and made again once it is back."""

    def __init__(self, node: str, params: dict[str, Any]) -> None:
        self.node = node
        self.params = params  # psycopg.connect's keywords (Django's for its own database)
        self.conn: psycopg.Connection[Any] | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def fileno(self) -> int:
        assert self.conn is not None
        return self.conn.fileno()

    def connect(self) -> bool:
        """(Re)connect and LISTEN; False when the database cannot be reached (tried again later)."""
        # A database machine that vanishes without closing the connection is noticed by keepalives.
        keepalives: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10}
        try:
            self.conn = psycopg.connect(**{**self.params, **keepalives}, autocommit=True, connect_timeout=10)
            self.conn.execute(f"LISTEN {WAKE_CHANNEL}")
        except psycopg.Error as exc:
            log.debug("LISTEN %s failed: %s", WAKE_CHANNEL, exc)
            self.close()
            return False
        return True

    def drain(self) -> bool:
        """Read what arrived; True when a NOTIFY named this node, or when the connection broke
        (the tick that follows finds out whether the database is away, or LISTENs again)."""
        assert self.conn is not None
        try:
            return any(notify.payload == self.node for notify in self.conn.notifies(timeout=0))
        except psycopg.Error:
            self.close()
            return True

    def close(self) -> None:
        if self.conn is not None:
            with suppress(Exception):
                self.conn.close()
            self.conn = None


class Outage:
    """The database is unreachable: log it once, retry with growing delays, say when it is back.
    Meanwhile the model servers are left exactly as they are."""

    first_delay = 0.5
    max_delay = 15.0

    def __init__(self) -> None:
        self.since: float | None = None
        self.failures = 0

    def failed(self, exc: Exception) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.error(
                "the database cannot be reached (%s); the model servers keep running; trying again with growing delays",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
        self.failures += 1

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("the database is back after %.0f s; catching up", time.monotonic() - self.since)
        self.since = None
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def delay(self) -> float:
        return min(self.first_delay * 2 ** max(self.failures - 1, 0), self.max_delay)


class Daemon:
    """`runsupervisor`: `run()` loops `while not self.shutdown` and then stops every server."""

    def __init__(self, supervisor: Supervisor, *, once: bool = False) -> None:
        self.supervisor = supervisor
        self.once = once
        self.shutdown = False
        self.outage = Outage()
        self.listener: NotifyListener | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping the servers, then the supervisor", signal.Signals(signum).name)
        self.shutdown = True

    def run(self) -> None:
        lock = InstanceLock(lock_path())
        lock.acquire()  # raises AlreadyRunning
        try:
            wake = WakeSocket(wake_socket_path())
            try:
                signal.signal(signal.SIGTERM, self.on_signal)
                signal.signal(signal.SIGINT, self.on_signal)
                signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the select
                wake.install_signal_wakeup()
                self.loop(wake)
            finally:
                wake.close()
        finally:
            lock.release()

    def loop(self, wake: WakeSocket) -> None:
        sup = self.supervisor
        sup.notify = wake.answered
        if not self.begin(wake):
            return  # asked to stop before the database was ever reached
        log.info("supervisor running (PID %s)", os.getpid())
        if connection.vendor == "postgresql":
            self.listener = NotifyListener(settings.MLXM_NODE_NAME, connection.get_connection_params())
            self.listener.connect()
        try:
            full = True
            while not self.shutdown:
                healthy = self.safe_tick(full=full)
                if self.once:
                    return
                if healthy and self.relisten():
                    full = True
                    continue  # LISTEN again: tick once more for what was missed without it
                woken = wake.wait(sup.seconds_until_next() if healthy else self.outage.delay(), self.listener)
                full = woken or not healthy
            sup.begin_shutdown()
            deadline = sup.host.time() + 2 * sup.policy.stop_timeout + 5
            while True:
                self.safe_tick()
                if not sup.busy() or sup.host.time() > deadline:
                    break
                wake.wait(min(sup.seconds_until_next(), 0.05))
            if self.supervisor.downloads is not None:
                self.supervisor.downloads.shutdown()
            with suppress(*DATABASE_AWAY):
                sup.end()
            log.info("supervisor stopped")
        finally:
            if self.listener is not None:
                self.listener.close()

    def begin(self, wake: WakeSocket) -> bool:
        """Announce this supervisor and adopt the servers, waiting for the database if it is away."""
        while not self.shutdown:
            try:
                self.supervisor.begin()
            except DATABASE_AWAY as exc:
                self.database_away(exc)
                wake.wait(self.outage.delay())
                continue
            self.outage.recovered()
            return True
        return False

    def relisten(self) -> bool:
        """After an outage: LISTEN again. True when it just did (NOTIFYs may have been missed)."""
        if self.listener is None or self.listener.connected:
            return False
        return self.listener.connect()

    def safe_tick(self, *, full: bool = True) -> bool:
        """One tick (a pass over every server when `full`); False when the database was
        unreachable (the caller then backs off)."""
        try:
            self.supervisor.tick(full=full)
        except DATABASE_AWAY as exc:
            self.database_away(exc)
            return False
        except Exception:
            # One bad tick must not take the supervisor (and the servers' watch) down.
            log.exception("the tick failed; trying again at the next one")
        self.outage.recovered()
        return True

    def database_away(self, exc: Exception) -> None:
        self.outage.failed(exc)
        # Drop the dead connections: Django makes a new one at the next query, the loop LISTENs again.
        with suppress(Error):
            connection.close()
        if self.listener is not None:
            self.listener.close()
