"""The web side's nudge to the supervisor: a one-byte datagram on a UNIX socket in the data
directory, so a Start is acted on at once instead of at the next poll; and the supervisor's nudge
to web workers waiting for a state change. Losing one is harmless: both sides also poll the
database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from pathlib import Path

from django.conf import settings


def wake_socket_path() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "supervisor.sock"


def wake_supervisor() -> bool:
    """Nudge the supervisor; True when a running supervisor received it."""
    path = wake_socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", str(path))
        return True
    except OSError:
        return False


# --- the other way: the supervisor's nudge to web workers waiting for a state change ---


def watchers_folder() -> Path:
    return Path(settings.MLXM_DATA_DIR) / "watchers"


class StateWatch:
    """A datagram socket a web worker holds while it waits for a server's state to change (an
    on-demand start): the supervisor writes to it after every transition (`wake_watchers`), so the
    wait reads the database again at once instead of at its next poll. Losing a nudge only costs
    that poll."""

    def __init__(self) -> None:
        folder = watchers_folder()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(6)}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    async def wait(self, timeout: float) -> bool:
        """Up to `timeout` seconds for a nudge; True when one came."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recv(self.sock, 64), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
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
