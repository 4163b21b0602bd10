"""macOS: the services as launchd LaunchAgents (plists in ~/Library/LaunchAgents)."""

from __future__ import annotations

import plistlib
import re
from collections.abc import Sequence
from pathlib import Path

from system.service_plan import (
    BOOTSTRAP_ATTEMPTS,
    STOP_TIMEOUT,
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

LAUNCHD_PREFIX = "com.mlxmanager"


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
