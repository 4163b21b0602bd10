"""The web side's nudge to the supervisor: a one-byte datagram on a UNIX socket in the data
directory, so a Start is acted on at once instead of at the next poll. Losing it is harmless: the
supervisor also polls the database."""

from __future__ import annotations

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
