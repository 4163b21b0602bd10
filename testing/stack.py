"""The whole app as `make run` starts it: gunicorn and `manage.py runsupervisor` under honcho,
on a fresh data directory and database, for end-to-end tests, fault drills and benchmarks."""

from __future__ import annotations

import contextlib
import fcntl
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


def ensure_collected_static(env: dict[str, str]) -> None:
    """gunicorn serves the manifest storage of production settings: it needs `collectstatic`, run
    once (`make test` runs it first; a bare `pytest` may not have). Under a lock: two test workers
    collecting into the same folder at once fail on each other's files (seen in CI)."""
    manifest = REPO / "staticfiles" / "staticfiles.json"
    with (REPO / ".collectstatic.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.is_file():
            subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
            )


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
        ensure_collected_static(self.env)
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


@dataclass
class NodeStack(Stack):
    """One node of several sharing one database (`database_url`): its own data directory, Hugging
    Face cache, name and address. gunicorn and the supervisor run as two processes, not under
    honcho (which ends the other when one dies), so a test can kill -9 the supervisor alone and
    start another, as a crash and a service manager's restart would."""

    name: str = "node"
    database_url: str = ""
    secret: str = ""
    web: subprocess.Popen[bytes] | None = None
    supervisor: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "MLXM_NODE_NAME": self.name,
                "MLXM_NODE_URL": self.url,
                "MLXM_NODE_SECRET": self.secret,
                "HF_HOME": str(self.root / "hf-home"),
                "WEB_CONCURRENCY": "1",  # several nodes share the test machine's cores
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, *, supervisor: bool = True) -> NodeStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        ensure_collected_static(self.env)
        self.web = self._spawn(str(BIN / "gunicorn"), "mlxmanager.asgi:application", "--config", "gunicorn.conf.py")
        if supervisor:
            self.start_supervisor()
        wait_for_http(f"{self.url}/healthz")
        return self

    def start_supervisor(self) -> subprocess.Popen[bytes]:
        self.supervisor = self._spawn(sys.executable, "manage.py", "runsupervisor")
        return self.supervisor

    def kill_supervisor(self) -> None:
        """kill -9 of the supervisor alone: its model servers and the web app keep running."""
        assert self.supervisor is not None
        self.supervisor.kill()
        self.supervisor.wait(10)

    def _spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> int | None:
        """SIGTERM to the supervisor (it stops its model servers) and to gunicorn; SIGKILL to what
        is left after a minute. Returns the supervisor's exit status."""
        status = None
        for attribute in ("supervisor", "web"):
            process: subprocess.Popen[bytes] | None = getattr(self, attribute)
            if process is None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                code = process.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                _kill_tree(process.pid)
                code = process.wait()
            status = code if attribute == "supervisor" else status
            setattr(self, attribute, None)
        return status
