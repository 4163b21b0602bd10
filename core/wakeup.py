"""The web side's nudge to a supervisor, so a Start is acted on at once instead of at the next
poll. Losing it is harmless: every supervisor also polls the database.

This node's supervisor gets a one-byte datagram on a UNIX socket in the data directory. On
PostgreSQL, where several nodes share the database, a `NOTIFY` on `WAKE_CHANNEL` carrying the
node's name reaches the supervisor of any node (each listens and wakes for its own name only).

And the other way: the supervisor's nudge to this machine's web workers waiting for a state change
(`StateWatch`, `wake_watchers`); they poll the database too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

WAKE_CHANNEL = "mlxm_wake"
log = logging.getLogger("mlxmanager.wakeup")


def wake_socket_path() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "supervisor.sock"


def wake_local() -> bool:
    """Nudge this machine's supervisor through its socket; True when a running one received it."""
    path = wake_socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", str(path))
        return True
    except OSError:
        return False


def wake_supervisor(*, node: str = "") -> bool:
    """Nudge the supervisor of `node` (default: this node); True when a nudge went out.

    On PostgreSQL the NOTIFY goes through Django's connection: inside a transaction PostgreSQL
    delivers it at commit (and drops it on rollback), so the supervisor never wakes before it can
    see what woke it. On SQLite only this node's supervisor can be reached."""
    node = node or settings.MLXM_NODE_NAME
    woke = wake_local() if node == settings.MLXM_NODE_NAME else False
    if connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [WAKE_CHANNEL, node])
            woke = True
        except DatabaseError:
            pass  # the database is away: the supervisor catches up when it is back
    return woke


# --- the other way: the supervisor's nudge to web workers waiting for a state change ---


def watchers_folder() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "watch"  # short: a socket's whole path must fit in ~100 bytes


class StateWatch:
    """A datagram socket a web worker holds while it waits for a server's state to change (an
    on-demand start): the supervisor writes to it after every transition (`wake_watchers`), so the
    wait reads the database again at once instead of at its next poll. Losing a nudge only costs
    that poll."""

    def __init__(self) -> None:
        folder = watchers_folder()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(str(self.path))
        except OSError as exc:  # e.g. a data directory too deep for a socket path (about 100 bytes)
            log.warning("waiting without nudges (polling only): cannot bind %s: %s", self.path, exc)
            self.sock.close()
            self.sock = None
            return
        self.sock.setblocking(False)

    async def wait(self, timeout: float) -> bool:
        """Up to `timeout` seconds for a nudge; True when one came."""
        if self.sock is None:
            await asyncio.sleep(timeout)
            return False
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recv(self.sock, 64), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> StateWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wake_watchers() -> None:
    """Nudge every waiting web worker; a socket left by a worker that died is removed."""
    try:
        entries = list(os.scandir(watchers_folder()))
    except OSError:
        return
    if not entries:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for entry in entries:
            try:
                sock.sendto(b"!", entry.path)
            except ConnectionRefusedError:  # nobody holds it any more
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            except OSError:  # its queue is full (it is being woken anyway) or it just went
                continue
