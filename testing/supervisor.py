"""Real `manage.py runsupervisor` processes for tests, against the pytest test database.

Used through the root conftest's `supervisor_process` fixture; teardown ends every supervisor it
started and every model server those left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def health_ok(port: int, timeout: float = 2.0) -> bool:
    """True when GET /health on 127.0.0.1:`port` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def answers_one_token(port: int, timeout: float = 60.0) -> bool:
    """True when a one-token /v1/completions on 127.0.0.1:`port` answers: the model is ready."""
    body = json.dumps({"prompt": "Hello", "max_tokens": 1}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bool(json.loads(response.read()).get("choices"))
    except (OSError, ValueError):
        return False


def server_processes(port: int) -> list[psutil.Process]:
    """Every mlx_lm.server (or mlx_vlm.server) on this machine listening (or about to) on `port`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if (
            ("mlx_lm" in cmdline or "mlx_vlm.server" in cmdline)
            and "--port" in cmdline
            and cmdline[cmdline.index("--port") + 1] == str(port)
        ):
            found.append(process)
    return found


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")


def database_url() -> str:
    """DATABASE_URL of the database this process uses (the test database, under pytest)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user, password = (urllib.parse.quote(str(db[key] or ""), safe="") for key in ("USER", "PASSWORD"))
        login = f"{user}:{password}@" if password else f"{user}@"
        return f"postgres://{login}{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def supervisor_env() -> dict[str, str]:
    """The environment for a `manage.py` subprocess that uses the test database and data folder."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MLXM_DATA_DIR": str(settings.MLXM_DATA_DIR),
        "PYTHONUNBUFFERED": "1",
    }


class SupervisorProcesses:
    """Start supervisors with `start()`; each writes its output to a log under `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.server_pids: dict[int, float | None] = {}

    def start(self, *args: str, wait: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `manage.py runsupervisor` (with `env` added to its environment); with `wait`,
        return once its heartbeat names it."""
        n = len(self.started) + 1
        log = open(self.log_dir / f"supervisor-{n}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runsupervisor", *args],
            cwd=BASE_DIR,
            env={**supervisor_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(proc)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        from nodes.models import Node

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the supervisor exited with {proc.returncode}: {self.output(proc)}")
            return Node.objects.filter(pid=proc.pid, heartbeat_at__isnull=False).exists()

        wait_for(ready, timeout=timeout, what="the supervisor's heartbeat")

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = self.started.index(proc) + 1
        return (self.log_dir / f"supervisor-{n}.log").read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def remember_servers(self) -> None:
        """Note the model servers recorded in the database, so teardown can end them."""
        from servers.models import Server

        for pid, create_time in Server.objects.values_list("pid", "process_started_at"):
            if pid:
                self.server_pids[pid] = create_time

    def cleanup(self) -> None:
        self.remember_servers()
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        leftovers = [p for pid, created in self.server_pids.items() if (p := _same_process(pid, created))]
        for process in leftovers:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        psutil.wait_procs(leftovers, timeout=5)


def _same_process(pid: int, create_time: float | None) -> psutil.Process | None:
    """The process `pid` if it is still the one recorded (a reused PID is left alone)."""
    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > 0.05:
            return None
        return process
    except psutil.Error:
        return None
