"""Where a running server listens and how to reach it: shared by the web side (chat) and the daemon
(health probes), so neither imports the other."""

from __future__ import annotations

from core.formatting import host_port
from servers.models import Server


def listen_address(server: Server) -> tuple[str, int]:
    """Where the running process listens: what it was started with, not the profile as edited since."""
    argv = list(server.cmdline or [])
    host = argv[argv.index("--host") + 1] if "--host" in argv[:-1] else server.profile.host
    return host, server.port or server.profile.port


def probe_address(host: str) -> str:
    """Where to reach a server listening on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def reach_url(host: str, port: int, path: str = "") -> str:
    """The http URL of `path` on a server listening on `host:port`, reached from this machine."""
    return f"http://{host_port(probe_address(host), port)}{path}"
