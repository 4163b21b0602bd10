"""What the OS services run and how installing them is carried out, whichever service manager:
the services, their environment, and the plan of files to write and commands to run (every
`launchctl`/`systemctl` call goes through one `Runner`, so tests can replace it)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Seconds a stopping process gets before SIGKILL: the supervisor finishes its tick and lets go of
# its lock; gunicorn finishes requests (its graceful_timeout is 30 s).
STOP_TIMEOUT = {"web": 40, "supervisor": 90}
# What the app reads from the environment and the services should see as the installer's shell
# does. Secrets (SECRET_KEY, HF_TOKEN) are left out on purpose: the app keeps its own key in the data
# directory, huggingface_hub its token under HF_HOME, and a `.env` in the repository is read anyway.
PASSED_THROUGH = (
    "DATABASE_URL",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "MLXM_MODEL_DIRS",
    "MLXM_PORT_BASE",
    "MLXM_WEB_PORT",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "WEB_CONNECTIONS",
    "MLXM_USAGE_RETENTION_DAYS",
    "MLXM_GATEWAY_TIMEOUT",
    "MLXM_QUEUE_TIMEOUT",
    "MLXM_QUEUE_MAX_PER_PERSON",
    "MLXM_MAX_BODY_BYTES",
    "TIME_ZONE",
    "LANG",
    "DEBUG",
    "LOG_LEVEL",
    "BEHIND_TLS_PROXY",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_HOURS",
    "MLXM_MEMORY_HEADROOM",
    "MLXM_START_TIMEOUT",
    "MLXM_HEARTBEAT_STALE",
    "MLXM_HUB_TIMEOUT",
    "MLXM_STOP_TIMEOUT",
    "MLXM_CORS_ORIGINS",
    "MLXM_LOG_MAX_BYTES",
    "MLXM_NODE_NAME",
    "MLXM_NODE_URL",
    "MLXM_ON_DEMAND_TIMEOUT",
    "MLXM_SUPERVISOR_POLL",
)
# The app's own settings a service does not get from the installer's shell, and why.
LEFT_OUT = {
    "MLXM_DATA_DIR": "set for both services from the installation's target (service_environment)",
    "MLXM_NODE_SECRET": "a secret: keep it in the repository's .env, which the app reads anyway",
    "MLXM_TEST_FAST_PASSWORD_HASH": "the test suite's only",
}
# launchd may refuse a bootstrap for a few seconds while the job it just booted out is still exiting.
BOOTSTRAP_ATTEMPTS = 10
RETRY_PAUSE = 3.0
DEFAULT_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


# --- the one door to launchctl and systemctl ---


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class Runner(Protocol):
    def run(self, argv: Sequence[str]) -> CommandResult: ...


@dataclass(frozen=True)
class SubprocessRunner:
    """Runs the command for real; a missing program is a result (127), not an exception. A page
    asks with a short timeout (STATUS_TIMEOUT) so a stuck service manager cannot hold a request."""

    timeout: float = 60.0

    def run(self, argv: Sequence[str]) -> CommandResult:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            return CommandResult(127, "", str(exc))
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{argv[0]} did not answer within {self.timeout:g} seconds")
        return CommandResult(done.returncode, done.stdout, done.stderr)


STATUS_TIMEOUT = 3.0


class ServiceError(Exception):
    """A service manager command failed; the message says which and what it answered."""


# --- what runs ---


@dataclass(frozen=True)
class Service:
    name: str  # "web" or "supervisor"
    description: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """Where and for whom the services are installed."""

    platform: str  # sys.platform: "darwin" or "linux"
    home: Path
    uid: int
    python: str  # the virtualenv's interpreter
    base_dir: Path  # the repository (WorkingDirectory)
    data_dir: Path  # MLXM_DATA_DIR
    environ: Mapping[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def app_services(target: Target) -> list[Service]:
    return [
        Service(
            "web",
            "MLX Manager web server (gunicorn)",
            (
                target.python,
                "-m",
                "gunicorn",
                "mlxmanager.asgi:application",
                "--config",
                str(target.base_dir / "gunicorn.conf.py"),
            ),
        ),
        Service(
            "supervisor",
            "MLX Manager supervisor (model servers and downloads)",
            (target.python, str(target.base_dir / "manage.py"), "runsupervisor"),
        ),
    ]


def service_environment(target: Target) -> dict[str, str]:
    """The environment both services run with."""
    env = {"MLXM_DATA_DIR": str(target.data_dir), "PYTHONUNBUFFERED": "1"}
    for name in PASSED_THROUGH:
        if target.environ.get(name):
            env[name] = target.environ[name]
    venv_bin = str(Path(target.python).parent)
    path = target.environ.get("PATH") or DEFAULT_PATH
    env["PATH"] = ":".join(dict.fromkeys(p for p in [venv_bin, *path.split(":")] if p))
    return dict(sorted(env.items()))


# --- the plan: files to write or remove and commands to run, carried out or only printed ---


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: bytes


@dataclass(frozen=True)
class RemoveFile:
    path: Path


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    check: bool = True  # False: a failure is expected when there is nothing to undo
    attempts: int = 1  # >1: tried again after RETRY_PAUSE seconds while it fails


Step = WriteFile | RemoveFile | Run


def describe(step: Step) -> str:
    if isinstance(step, WriteFile):
        return f"write {step.path}:\n{step.content.decode()}"
    if isinstance(step, RemoveFile):
        return f"remove {step.path}"
    note = (
        "   (a failure here is fine)"
        if not step.check
        else "   (tried again while launchd is busy)"
        if step.attempts > 1
        else ""
    )
    return f"run: {shlex.join(step.argv)}{note}"


def carry_out(steps: Sequence[Step], *, runner: Runner, pause: Callable[[float], None] = time.sleep) -> list[str]:
    """Do the steps in order; returns what was done. Raises ServiceError when a checked command fails."""
    done: list[str] = []
    for step in steps:
        if isinstance(step, WriteFile):
            step.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600: DATABASE_URL may hold a password.
            fd = os.open(step.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(step.content)
            os.chmod(step.path, 0o600)
            done.append(f"wrote {step.path}")
        elif isinstance(step, RemoveFile):
            if step.path.exists():
                step.path.unlink()
                done.append(f"removed {step.path}")
        else:
            result = runner.run(step.argv)
            for _ in range(step.attempts - 1):
                if result.returncode == 0:
                    break
                pause(RETRY_PAUSE)
                result = runner.run(step.argv)
            if step.check and result.returncode != 0:
                answer = (result.stderr or result.stdout).strip()
                raise ServiceError(f"`{shlex.join(step.argv)}` failed ({result.returncode}): {answer}")
            done.append(f"ran {shlex.join(step.argv)}")
    return done


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    label: str
    path: Path
    installed: bool
    loaded: bool
    running: bool | None  # None: the service manager could not be asked
    pid: int | None
    detail: str
