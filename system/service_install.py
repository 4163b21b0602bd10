"""Run MLX Manager as OS services: launchd LaunchAgents on macOS, systemd user units on Linux.

Two services: the web server (gunicorn with the repository's gunicorn.conf.py) and the supervisor
(`manage.py runsupervisor`). Every `launchctl`/`systemctl` call goes through one `Runner`, so tests
can replace it (neither can run in CI); the platform and the home directory are given, not guessed
deep inside, for the same reason.

How the services stay out of the supervisor's way: its single-instance lock (a lock file in the data
directory, owned by the supervisor) is what keeps two supervisors from running at once. The service
manager never starts a second copy of a unit or a label while the first is still stopping, and the
definitions below give a stopping supervisor time to finish (TimeoutStopSec / ExitTimeOut) and never
kill the model servers it leaves behind for the next one to adopt (KillMode=process; launchd only
signals the job's own process). Both services get the same MLXM_DATA_DIR, so they find the same
lock, socket and database as a supervisor started by hand.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LAUNCHD_PREFIX = "com.mlxmanager"
SYSTEMD_PREFIX = "mlx-manager"
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
)
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


# --- macOS: launchd LaunchAgents ---


class Launchd:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.domain = f"gui/{target.uid}"

    def label_for(self, service: Service) -> str:
        return f"{LAUNCHD_PREFIX}.{service.name}"

    def path_for(self, service: Service) -> Path:
        return self.target.home / "Library" / "LaunchAgents" / f"{self.label_for(service)}.plist"

    def definition(self, service: Service) -> dict[str, object]:
        logs = self.target.log_dir
        plist: dict[str, object] = {
            "Label": self.label_for(service),
            "ProgramArguments": list(service.argv),
            "WorkingDirectory": str(self.target.base_dir),
            "EnvironmentVariables": service_environment(self.target),
            "RunAtLoad": True,
            # Restart after a crash (non-zero exit or a signal), not after a clean stop.
            "KeepAlive": {"SuccessfulExit": False},
            "ThrottleInterval": 10,
            # Seconds between SIGTERM and SIGKILL when launchd stops the job.
            "ExitTimeOut": STOP_TIMEOUT[service.name],
            "StandardOutPath": str(logs / f"{service.name}.out.log"),
            "StandardErrorPath": str(logs / f"{service.name}.err.log"),
        }
        if service.name == "supervisor":
            # Without it launchd throttles CPU and I/O of the job, and the model servers it spawns.
            plist["ProcessType"] = "Interactive"
            # The model servers run in their own sessions; should launchd ever see them in the job's
            # process group, it must not kill them when the supervisor exits: the next one adopts them.
            plist["AbandonProcessGroup"] = True
        return plist

    def render(self, service: Service) -> bytes:
        return plistlib.dumps(self.definition(service), sort_keys=True)

    def install_steps(self, services: Sequence[Service]) -> list[Step]:
        steps: list[Step] = []
        for service in services:
            target = f"{self.domain}/{self.label_for(service)}"
            steps += [
                WriteFile(self.path_for(service), self.render(service)),
                # An older definition may be loaded: unload it so the new one takes effect.
                Run(("launchctl", "bootout", target), check=False),
                Run(("launchctl", "enable", target)),
                Run(("launchctl", "bootstrap", self.domain, str(self.path_for(service))), attempts=BOOTSTRAP_ATTEMPTS),
            ]
        return steps

    def uninstall_steps(self, services: Sequence[Service]) -> list[Step]:
        steps: list[Step] = []
        for service in services:
            steps += [
                Run(("launchctl", "bootout", f"{self.domain}/{self.label_for(service)}"), check=False),
                RemoveFile(self.path_for(service)),
            ]
        return steps

    def status(self, service: Service, runner: Runner) -> ServiceStatus:
        label = self.label_for(service)
        path = self.path_for(service)
        result = runner.run(("launchctl", "print", f"{self.domain}/{label}"))
        loaded = result.returncode == 0
        state = re.search(r"^\s*state = (\S+)", result.stdout, re.MULTILINE)
        pid = re.search(r"^\s*pid = (\d+)", result.stdout, re.MULTILINE)
        running = loaded and state is not None and state.group(1) == "running"
        if loaded:
            detail = f"loaded, {state.group(1) if state else 'state unknown'}"
        else:
            detail = "not loaded" + (f" ({result.stderr.strip()})" if result.returncode == 127 else "")
        return ServiceStatus(
            service.name, label, path, path.exists(), loaded, running, int(pid.group(1)) if pid else None, detail
        )


# --- Linux: systemd user units ---


def systemd_quote(value: str) -> str:
    """One word of ExecStart= or Environment=: specifiers (%) and variables ($) kept literal,
    quoted when it holds spaces or quotes."""
    value = value.replace("%", "%%")
    if re.search(r"[\s\"'\\]", value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


class Systemd:
    def __init__(self, target: Target) -> None:
        self.target = target

    def label_for(self, service: Service) -> str:
        return f"{SYSTEMD_PREFIX}-{service.name}.service"

    def path_for(self, service: Service) -> Path:
        return self.target.home / ".config" / "systemd" / "user" / self.label_for(service)

    def render(self, service: Service) -> bytes:
        env = service_environment(self.target)
        exec_start = " ".join(systemd_quote(arg).replace("$", "$$") for arg in service.argv)
        log = self.target.log_dir / f"{service.name}.log"
        lines = [
            "[Unit]",
            f"Description={service.description}",
            "StartLimitIntervalSec=300",
            "StartLimitBurst=10",
            "",
            "[Service]",
            "Type=simple",
            f"WorkingDirectory={systemd_quote(str(self.target.base_dir))}",
            *[f"Environment={systemd_quote(f'{key}={value}')}" for key, value in env.items()],
            f"ExecStart={exec_start}",
            "Restart=on-failure",
            "RestartSec=5",
            f"TimeoutStopSec={STOP_TIMEOUT[service.name]}",
        ]
        if service.name == "supervisor":
            # SIGTERM to the supervisor only: the model servers it leaves running are adopted by
            # the next supervisor instead of being killed with the unit's control group.
            lines.append("KillMode=process")
        else:
            # SIGTERM to gunicorn's master (it stops its workers), SIGKILL to leftovers at the timeout.
            lines.append("KillMode=mixed")
        lines += [
            f"StandardOutput=append:{str(log).replace('%', '%%')}",
            "StandardError=inherit",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
        return "\n".join(lines).encode()

    def install_steps(self, services: Sequence[Service]) -> list[Step]:
        units = tuple(self.label_for(s) for s in services)
        steps: list[Step] = [WriteFile(self.path_for(s), self.render(s)) for s in services]
        steps += [
            Run(("systemctl", "--user", "daemon-reload")),
            Run(("systemctl", "--user", "enable", *units)),
            # restart, not start: a running service picks up the new definition.
            Run(("systemctl", "--user", "restart", *units)),
        ]
        return steps

    def uninstall_steps(self, services: Sequence[Service]) -> list[Step]:
        units = tuple(self.label_for(s) for s in services)
        steps: list[Step] = [Run(("systemctl", "--user", "disable", "--now", *units), check=False)]
        steps += [RemoveFile(self.path_for(s)) for s in services]
        steps.append(Run(("systemctl", "--user", "daemon-reload"), check=False))
        return steps

    def status(self, service: Service, runner: Runner) -> ServiceStatus:
        label = self.label_for(service)
        path = self.path_for(service)
        result = runner.run(("systemctl", "--user", "show", "--property=LoadState,ActiveState,SubState,MainPID", label))
        props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        if result.returncode != 0:
            detail = _systemctl_failure(result)
            return ServiceStatus(service.name, label, path, path.exists(), False, None, None, detail)
        loaded = props.get("LoadState") == "loaded"
        running = props.get("ActiveState") == "active"
        pid = int(props.get("MainPID", "0") or 0) or None
        detail = f"{props.get('ActiveState', 'unknown')} ({props.get('SubState', 'unknown')})"
        return ServiceStatus(service.name, label, path, path.exists(), loaded, running, pid, detail)


NO_USER_MANAGER = (
    "This account has no systemd user session here (usual in a container, or over SSH without lingering), "
    "so it cannot run as a service yet: run `loginctl enable-linger` as this user once and log in again, "
    "or keep using `make run`."
)
NO_SYSTEMD = (
    "This Linux has no systemd (no `systemctl`): MLX Manager cannot install itself as a service; use `make run`."
)


def _systemctl_failure(result: CommandResult) -> str:
    """What a failed `systemctl --user show` means, in words: its own message only when unknown."""
    answer = (result.stderr or result.stdout).strip().splitlines()
    first = answer[0] if answer else str(result.returncode)
    if result.returncode == 127:
        return NO_SYSTEMD
    if "connect to bus" in first or "DBUS_SESSION_BUS_ADDRESS" in first or "XDG_RUNTIME_DIR" in first:
        return NO_USER_MANAGER
    return f"systemctl could not say: {first}"


BACKENDS: dict[str, type[Launchd] | type[Systemd]] = {"darwin": Launchd, "linux": Systemd}


def backend_for(target: Target) -> Launchd | Systemd:
    try:
        return BACKENDS[target.platform](target)
    except KeyError:
        raise ServiceError(
            f"Running as a service is supported on macOS (launchd) and Linux (systemd), not on {target.platform}."
        ) from None


def services_install(
    *, target: Target, runner: Runner, dry_run: bool = False, pause: Callable[[float], None] = time.sleep
) -> list[str]:
    backend = backend_for(target)
    steps = backend.install_steps(app_services(target))
    if dry_run:
        return [describe(step) for step in steps]
    target.log_dir.mkdir(parents=True, exist_ok=True)
    return carry_out(steps, runner=runner, pause=pause)


def services_uninstall(*, target: Target, runner: Runner, dry_run: bool = False) -> list[str]:
    backend = backend_for(target)
    steps = backend.uninstall_steps(app_services(target))
    if dry_run:
        return [describe(step) for step in steps]
    return carry_out(steps, runner=runner)


def services_status(*, target: Target, runner: Runner) -> list[ServiceStatus]:
    backend = backend_for(target)
    return [backend.status(service, runner) for service in app_services(target)]


def current_target() -> Target:
    """This machine, this user, this virtualenv and this repository."""
    from django.conf import settings

    return Target(
        platform=sys.platform,
        home=Path.home(),
        uid=os.getuid(),
        python=sys.executable,
        base_dir=Path(settings.BASE_DIR),
        data_dir=Path(settings.MLXM_DATA_DIR),
        environ=dict(os.environ),
    )


def manage_command(target: Target, *options: str) -> str:
    """The shell command an admin types to run installservice with these options."""
    return (
        shlex.join(["cd", str(target.base_dir)])
        + " && "
        + shlex.join([target.python, "manage.py", "installservice", *options])
    )
