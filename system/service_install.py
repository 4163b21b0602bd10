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
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from system.launchd import Launchd
from system.service_plan import Runner, ServiceError, ServiceStatus, Target, app_services, carry_out, describe
from system.systemd import Systemd

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
