"""The web side's nudge to a supervisor, so a Start is acted on at once instead of at the next
poll. Losing it is harmless: every supervisor also polls the database.

This node's supervisor gets a one-byte datagram on a UNIX socket in the data directory. On
PostgreSQL, where several nodes share the database, a `NOTIFY` on `WAKE_CHANNEL` carrying the
node's name reaches the supervisor of any node (each listens and wakes for its own name only).
"""

from __future__ import annotations

import socket
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

WAKE_CHANNEL = "mlxm_wake"


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
