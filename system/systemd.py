"""Linux: the services as systemd user units (in ~/.config/systemd/user)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from system.service_plan import (
    STOP_TIMEOUT,
    CommandResult,
    RemoveFile,
    Run,
    Runner,
    Service,
    ServiceStatus,
    Step,
    Target,
    WriteFile,
    service_environment,
)

SYSTEMD_PREFIX = "mlx-manager"


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
