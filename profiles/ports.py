"""Ports: the next one free for a new profile, and who holds a port right now.

"Free" means no other profile uses it and no process on this machine listens on it (psutil).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
from django.conf import settings

from profiles.models import ServerProfile
from profiles.selectors import profile_serving

PORT_MIN = 1024
PORT_MAX = 65535
# The form checks the port as it is typed: one scan of the machine's sockets serves the keystrokes
# of a few seconds (the scan lists every socket of every process, the costliest part of a check).
TYPING_SCAN_SECONDS = 5.0


class NoFreePort(Exception):
    """Every port from the start of the search up to the top of the range is taken."""


@dataclass(frozen=True)
class PortHolder:
    pid: int | None
    name: str

    def __str__(self) -> str:
        return f"{self.name} (PID {self.pid})" if self.pid else self.name


def _listening() -> list[tuple[int, int | None]]:
    """(port, pid) of every listening TCP socket we can see. macOS refuses the system-wide list
    to non-root users, so fall back to asking each process we may inspect."""
    try:
        return [
            (conn.laddr.port, conn.pid)
            for conn in psutil.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.laddr
        ]
    except psutil.AccessDenied:
        found: list[tuple[int, int | None]] = []
        for proc in psutil.process_iter():
            try:
                found += [
                    (conn.laddr.port, proc.pid)
                    for conn in proc.net_connections(kind="inet")
                    if conn.status == psutil.CONN_LISTEN and conn.laddr
                ]
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return found


_last_scan: tuple[float, list[tuple[int, int | None]]] = (float("-inf"), [])


def _listening_within(max_age: float) -> list[tuple[int, int | None]]:
    """`_listening()`, or the last scan of this process if it is at most `max_age` seconds old."""
    global _last_scan
    taken_at, found = _last_scan
    if max_age <= 0 or time.monotonic() - taken_at > max_age:
        found = _listening()
        _last_scan = (time.monotonic(), found)
    return found


def listening_ports() -> set[int]:
    """Ports some process on this machine listens on right now."""
    return {port for port, _ in _listening()}


def port_holder(port: int, *, max_age: float = 0.0) -> PortHolder | None:
    """The process listening on `port`, or None when nothing does (from a scan at most `max_age`
    seconds old). The name is "an unknown process" when the operating system does not tell us
    whose socket it is (another user's, say)."""
    pids = [pid for listened, pid in _listening_within(max_age) if listened == port]
    if not pids:
        return None
    pid = next((pid for pid in pids if pid), None)
    if pid is None:
        return PortHolder(pid=None, name="an unknown process")
    try:
        name = psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        name = "an unknown process"
    return PortHolder(pid=pid, name=name)


def next_free_port(*, exclude: ServerProfile | None = None, base: int | None = None, top: int = PORT_MAX) -> int:
    """The first port above every port used by another profile (and at least `base`, by default
    settings.MLXM_PORT_BASE) that no process listens on. Raises NoFreePort at the top of the range."""
    start = max(base if base is not None else settings.MLXM_PORT_BASE, PORT_MIN)
    others = ServerProfile.objects.all()
    if exclude is not None and exclude.pk:
        others = others.exclude(pk=exclude.pk)
    highest = max(others.values_list("port", flat=True), default=None)
    if highest is not None:
        start = max(start, highest + 1)
    busy = listening_ports()
    for port in range(start, top + 1):
        if port not in busy:
            return port
    if highest is not None and highest >= top:
        raise NoFreePort(
            f"No free port left above the other profiles: one already uses port {highest}, the top of the "
            f"range ({top}). Choose a free lower port by hand."
        )
    raise NoFreePort(f"No free port between {start} and {top}: processes on this machine listen on all of them.")


@dataclass(frozen=True)
class PortStatus:
    level: str  # "ok", "warning" or "error"
    message: str


def port_status(value: str, *, exclude: ServerProfile | None = None, max_age: float = 0.0) -> PortStatus:
    """What the form says about a port as it is typed: taken by another profile (error), held by a
    process that is not one of our servers (warning, with its name and PID), or free; processes
    from a scan of the sockets at most `max_age` seconds old."""
    try:
        port = int(value.strip())
    except ValueError:
        return PortStatus("error", "The port must be a whole number.")
    if not PORT_MIN <= port <= PORT_MAX:
        return PortStatus("error", f"The port must be between {PORT_MIN} and {PORT_MAX}.")
    others = ServerProfile.objects.filter(port=port)
    if exclude is not None and exclude.pk:
        others = others.exclude(pk=exclude.pk)
    if clash := others.first():
        return PortStatus("error", f"Port {port} is already used by the profile “{clash.name}”.")
    holder = port_holder(port, max_age=max_age)
    if holder is None:
        return PortStatus("ok", f"Port {port} is free.")
    ours = profile_serving(holder.pid) if holder.pid else None
    if ours is not None and exclude is not None and ours.pk == exclude.pk:
        return PortStatus("ok", f"Port {port} is in use by this profile's own server.")
    if ours is not None:
        return PortStatus("warning", f"Port {port} is still held by the server of “{ours.name}” (PID {holder.pid}).")
    return PortStatus(
        "warning",
        f"Port {port} is in use by {holder}. The server will fail to start unless that process lets go of it.",
    )
