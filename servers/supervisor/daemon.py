"""The supervisor process around the reconcile loop: one instance per data directory (a lock),
a wake-up socket the web side nudges, signals that ask for a clean stop."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import IO

from django.conf import settings
from django.db import OperationalError, connection

from mlxmanager.wakeup import wake_socket_path
from servers.supervisor.core import Supervisor

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
    """The datagram socket `mlxmanager.wakeup.wake_supervisor` writes to, plus a self-pipe that
    signals (SIGTERM, SIGINT, SIGCHLD) write to, so `wait` returns at once for either."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)  # a leftover from a supervisor that was killed; we hold the lock
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.signal_r, self.signal_w = socket.socketpair()
        self.signal_r.setblocking(False)
        self.signal_w.setblocking(False)
        self.signals_installed = False

    def install_signal_wakeup(self) -> None:
        signal.set_wakeup_fd(self.signal_w.fileno(), warn_on_full_buffer=False)
        self.signals_installed = True

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when woken by the web side or a signal."""
        ready, _, _ = select.select([self.sock, self.signal_r], [], [], timeout)
        for readable in ready:
            try:
                while readable.recv(512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        return bool(ready)

    def close(self) -> None:
        if self.signals_installed:
            signal.set_wakeup_fd(-1)
        self.sock.close()
        self.signal_r.close()
        self.signal_w.close()
        self.path.unlink(missing_ok=True)


class Daemon:
    """`runsupervisor`: `run()` loops `while not self.shutdown` and then stops every server."""

    def __init__(self, supervisor: Supervisor, *, once: bool = False) -> None:
        self.supervisor = supervisor
        self.once = once
        self.shutdown = False

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
        sup.begin()
        log.info("supervisor running (PID %s)", os.getpid())
        while not self.shutdown:
            self.safe_tick()
            if self.once:
                return
            wake.wait(sup.seconds_until_next())
        sup.begin_shutdown()
        deadline = sup.host.time() + 2 * sup.policy.stop_timeout + 5
        while True:
            self.safe_tick()
            if not sup.busy() or sup.host.time() > deadline:
                break
            wake.wait(min(sup.seconds_until_next(), 0.05))
        if self.supervisor.downloads is not None:
            self.supervisor.downloads.shutdown()
        sup.end()
        log.info("supervisor stopped")

    def safe_tick(self) -> None:
        try:
            self.supervisor.tick()
        except OperationalError:
            log.exception("database error; trying again at the next tick")
            connection.close()
        except Exception:
            # One bad tick must not take the supervisor (and the servers' watch) down.
            log.exception("the tick failed; trying again at the next one")
