"""The whole app as `make run` starts it: gunicorn and `manage.py runsupervisor` under honcho,
on a fresh data directory and database, for end-to-end tests, fault drills and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testing.net import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_for_http(url: str, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


@dataclass
class Stack:
    """One running copy of the app. `env` is what its processes see; `manage()` runs a command
    against the same data directory and database."""

    root: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: tuple[str, ...] = ()  # of the Procfile ("web", "supervisor"); none named: all
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "stack.log"

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DJANGO_ALLOW"))}
        env.update(
            {
                "MLXM_DATA_DIR": str(self.data_dir),
                "DATABASE_URL": f"sqlite:///{self.data_dir / 'db.sqlite3'}",
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "DJANGO_SETTINGS_MODULE": "mlxmanager.settings",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=check, capture_output=True, text=True
        )

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput", "-v", "0")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlxmanager.run", "-f", "Procfile", "start", *self.processes],  # as `make run`
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if "web" in self.processes or not self.processes:
            wait_for_http(f"{self.url}/healthz")
        return self

    def stop(self) -> int | None:
        """Ctrl-C, as a person would; then make sure nothing of it is left. Returns the exit status."""
        if self.process is None:
            return None
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            status = self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            _kill_tree(self.process.pid)
            status = self.process.wait()
        self.process = None
        return status

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it (honcho runs in a process group of its own)."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.kill()
