"""Every operating-system call the supervisor makes, behind one object.

`RealHost` talks to the machine; the tests drive the state machine with a fake host that has the
same methods (a clock they move by hand and processes they make exit at will).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from core.memory import memory, swap
from profiles.ports import port_holder
from servers.addresses import probe_address
from servers.supervisor.ready import READY_REQUEST, ReadyRequest, ready_answer


class Process(Protocol):
    """A model server process the supervisor owns (spawned by it or adopted)."""

    pid: int
    create_time: float

    def alive(self) -> bool: ...

    def exit_code(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal); None when unknown."""
        ...

    def cmdline(self) -> list[str]: ...


@dataclass(frozen=True)
class HealthAnswer:
    """What GET /health said: its HTTP status (None: no answer at all) and how long it took."""

    status: int | None
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def refused(self) -> bool:
        """The server answered that it cannot serve: mlx-lm says 503 for ever once its generation
        thread has died (a failed load, or a crash later), while the process stays up."""
        return self.status == 503


class Host(Protocol):
    def time(self) -> float: ...

    def spawn(self, argv: Sequence[str], *, log_path: Path, marker: str = "") -> Process: ...

    def find_marked(self, marker: str) -> Process | None: ...

    def find(self, pid: int, *, create_time: float | None, cmdline: Sequence[str]) -> Process | None: ...

    def signal(self, process: Process, sig: int) -> None: ...

    def port_holder(self, host: str, port: int) -> str | None: ...

    def health_soon(self, host: str, port: int, *, timeout: float) -> Future[HealthAnswer]:
        """GET /health in the background: the loop never waits for a server that does not answer."""
        ...

    def generate_one(
        self, host: str, port: int, *, timeout: float, request: ReadyRequest = READY_REQUEST
    ) -> Future[str | None]:
        """Send the readiness request (a one-token completion, or what the profile's kind answers:
        servers.supervisor.ready) in the background; the result is None when it answered, else
        why not, in words."""
        ...

    def memory(self) -> tuple[int, int]: ...

    def swap(self) -> tuple[int, int]: ...

    def folder_size(self, folder: Path) -> int: ...

    def usage(self, process: Process) -> tuple[int, float] | None: ...


# --- the real machine ---


class ChildProcess:
    """A process this supervisor spawned: its exit is read with waitpid (no zombies)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.handle = psutil.Process(popen.pid)
        self.create_time = self.handle.create_time()

    def cmdline(self) -> list[str]:
        return [str(arg) for arg in self.popen.args]  # type: ignore[union-attr]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll()


class AdoptedProcess:
    """A process a previous supervisor spawned; it is not our child, so its exit code is unknown."""

    def __init__(self, handle: psutil.Process) -> None:
        self.handle = handle
        self.pid = handle.pid
        self.create_time = handle.create_time()

    def cmdline(self) -> list[str]:
        try:
            return list(self.handle.cmdline())
        except psutil.Error:
            return []

    def alive(self) -> bool:
        try:
            return self.handle.is_running() and self.handle.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def exit_code(self) -> int | None:
        return None


# The manager's own secrets stay with the manager: model servers listen on the network and may run
# a model's remote code.
# Put in every model server's environment before it is spawned, so a supervisor can find a process
# whose PID was never saved (the previous one died between spawn and save): see `find_marked`.
MARKER_ENV = "MLXM_SERVER_MARKER"

PRIVATE_ENV_PREFIXES = ("SECRET_KEY", "DATABASE_URL", "DJANGO_", "AXES_", "HF_TOKEN", "CSRF_", "SESSION_")


def model_server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a model server: the manager's, minus its secrets, and offline for the Hub
    so a server never downloads a model (or a draft model named in a request) by itself."""
    env = {key: value for key, value in environ.items() if not key.startswith(PRIVATE_ENV_PREFIXES)}
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


PPID_MAP_SECONDS = 30.0


@dataclass
class RealHost:
    """The machine itself."""

    _children: dict[int, list[int]] = field(default_factory=dict)  # PIDs by parent PID
    _children_at: float = 0.0
    # Probes and readiness checks run here: a loading model may take minutes to answer and a hung
    # one its whole timeout, and the loop must wait for neither. At most one probe and one
    # readiness check per server are under way, so up to half this many servers never queue.
    _requests: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=64, thread_name_prefix="probe")
    )

    def _descendants(self, pid: int) -> list[int]:
        """Children, grandchildren... of `pid`, from one scan of the process table every
        PPID_MAP_SECONDS (psutil's children() scans it for every call, and the scan was the
        costliest part of an idle supervisor's sampling). Model servers rarely spawn children."""
        if time.monotonic() - self._children_at > PPID_MAP_SECONDS:
            self._children = {}
            for proc in psutil.process_iter(["ppid"]):
                self._children.setdefault(proc.info["ppid"], []).append(proc.pid)
            self._children_at = time.monotonic()
        found: list[int] = []
        todo = [pid]
        while todo:
            for child in self._children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def time(self) -> float:
        return time.time()

    def spawn(self, argv: Sequence[str], *, log_path: Path, marker: str = "") -> Process:
        env = model_server_env(os.environ)
        if marker:
            env[MARKER_ENV] = marker
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        return ChildProcess(popen)

    def find_marked(self, marker: str) -> Process | None:
        """A live process of this user whose environment carries `marker` (the oldest, if several)."""
        found: list[psutil.Process] = []
        for handle in psutil.process_iter():
            try:
                if handle.uids().real != os.getuid() or handle.status() == psutil.STATUS_ZOMBIE:
                    continue
                if handle.environ().get(MARKER_ENV) == marker:
                    found.append(handle)
            except (psutil.Error, OSError):
                continue
        found.sort(key=lambda handle: handle.create_time())
        return AdoptedProcess(found[0]) if found else None

    def find(self, pid: int, *, create_time: float | None, cmdline: Sequence[str]) -> Process | None:
        """The process `pid` if it is still the one we started (same start time and argv)."""
        try:
            handle = psutil.Process(pid)
            if handle.status() == psutil.STATUS_ZOMBIE:
                return None
            if create_time is None or abs(handle.create_time() - create_time) > 0.05:
                return None
            if list(cmdline) != handle.cmdline():
                return None
        except psutil.Error:
            return None
        return AdoptedProcess(handle)

    def signal(self, process: Process, sig: int) -> None:
        """Signal the process group (the server and anything it started); the group id is the
        pid because servers are started in a new session."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(OSError):
                os.kill(process.pid, sig)

    def port_holder(self, host: str, port: int) -> str | None:
        """None when `host:port` can be listened on; otherwise who holds it, in words."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # The same option http.server sets, so a socket in TIME_WAIT does not count as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return None
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return f"nothing can listen there ({exc.strerror})"
        holder = port_holder(port)
        return str(holder) if holder else "another program (its name could not be read)"

    def health(self, host: str, port: int, *, timeout: float) -> HealthAnswer:
        """GET /health: its status and how long it took (status None when nothing answered)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection(probe_address(host), port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            return HealthAnswer(status=None)
        finally:
            conn.close()
        return HealthAnswer(status=response.status, ms=(time.perf_counter() - started) * 1000)

    def health_soon(self, host: str, port: int, *, timeout: float) -> Future[HealthAnswer]:
        return self._requests.submit(self.health, host, port, timeout=timeout)

    def generate_one(
        self, host: str, port: int, *, timeout: float, request: ReadyRequest = READY_REQUEST
    ) -> Future[str | None]:
        return self._requests.submit(ready_answer, probe_address(host), port, timeout=timeout, request=request)

    def memory(self) -> tuple[int, int]:
        """Total and available memory in bytes, as the OS counts them (vm_stat on macOS)."""
        now = memory()
        return now.total, now.available

    def swap(self) -> tuple[int, int]:
        """Total and used swap in bytes."""
        return swap()

    def folder_size(self, folder: Path) -> int:
        """Bytes the folder takes on disk (allocated blocks; symlinks are not followed, so the cache's
        snapshot links do not count the blobs twice); 0 when it does not exist."""
        total = 0
        stack = [folder]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(Path(entry.path))
                            else:
                                total += entry.stat(follow_symlinks=False).st_blocks * 512
                        except OSError:
                            continue
            except OSError:
                continue
        return total

    def usage(self, process: Process) -> tuple[int, float] | None:
        """Resident memory of the process and its children (bytes) and their CPU use (% of a core)."""
        handle: psutil.Process | None = getattr(process, "handle", None)
        if handle is None:
            return None
        # cpu_percent compares with the previous call on the same object, so keep them.
        cache: dict[int, psutil.Process] = getattr(process, "cpu_handles", {handle.pid: handle})
        rss = 0
        cpu = 0.0
        for pid in [handle.pid, *self._descendants(handle.pid)]:
            try:
                member = cache.get(pid) or cache.setdefault(pid, psutil.Process(pid))
                rss += member.memory_info().rss
                cpu += member.cpu_percent(interval=None)
            except psutil.Error:
                cache.pop(pid, None)
        process.cpu_handles = cache  # type: ignore[attr-defined]
        return rss, cpu
