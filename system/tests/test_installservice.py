"""`manage.py installservice` on macOS (launchd) and Linux (systemd).

The one replaced part is the runner that calls `launchctl`/`systemctl`: neither can run in CI
(there is no launchd on Linux and no systemd user session in a container), so `RecordingRunner`
stands in for it and records the exact commands. Everything else is real: the files are written
to a temporary home, the plist is read back with plistlib, the units are checked by
`systemd-analyze verify` and key by key.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import plistlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from system.launchd import Launchd
from system.management.commands.installservice import Command
from system.service_plan import BOOTSTRAP_ATTEMPTS, RETRY_PAUSE, CommandResult, Target, app_services
from system.systemd import Systemd
from testing.net import free_port

UID = 501
BASE_DIR = Path(settings.BASE_DIR)
PYTHON = sys.executable
GUNICORN_ARGV = [
    PYTHON,
    "-m",
    "gunicorn",
    "mlxmanager.asgi:application",
    "--config",
    str(BASE_DIR / "gunicorn.conf.py"),
]


class RecordingRunner:
    """Stands in for launchctl/systemctl: records each command and answers from a script
    (argv prefix -> result); anything unscripted succeeds silently."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}
        self.pauses: list[float] = []  # the installer's waits between attempts, recorded instead of slept

    def run(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        for prefix, result in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return result
        return CommandResult(0)


def make_target(tmp_path: Path, platform: str, **environ: str) -> Target:
    return Target(
        platform=platform,
        home=tmp_path / "home",
        uid=UID,
        python=PYTHON,
        base_dir=BASE_DIR,
        data_dir=tmp_path / "data dir",
        environ={"PATH": "/usr/bin:/bin", **environ},
    )


def run_command(target: Target, runner: RecordingRunner, *args: str) -> str:
    command = Command()
    command.runner = runner
    command.target = target
    command.pause = runner.pauses.append
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def static_root(settings: Any, tmp_path: Path) -> Path:
    settings.STATIC_ROOT = tmp_path / "static"
    return Path(settings.STATIC_ROOT)


# --- what the definitions say ---


def test_launchd_plist_parses_and_has_the_right_keys(tmp_path: Path) -> None:
    target = make_target(
        tmp_path,
        "darwin",
        DATABASE_URL="postgres://mlx:s3cret@db/mlx",
        HF_HOME="/Volumes/Models/hf",
        SECRET_KEY="must-not-be-copied",
        HF_TOKEN="hf_must_not_be_copied",
    )
    launchd = Launchd(target)
    web, supervisor = app_services(target)

    plist = plistlib.loads(launchd.render(web))
    assert plist["Label"] == "com.mlxmanager.web"
    assert plist["ProgramArguments"] == GUNICORN_ARGV
    assert plist["WorkingDirectory"] == str(BASE_DIR)
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    env = plist["EnvironmentVariables"]
    assert env["MLXM_DATA_DIR"] == str(tmp_path / "data dir")
    assert env["DATABASE_URL"] == "postgres://mlx:s3cret@db/mlx"
    assert env["HF_HOME"] == "/Volumes/Models/hf"
    assert env["PATH"].split(":") == [str(Path(PYTHON).parent), "/usr/bin", "/bin"]
    assert "SECRET_KEY" not in env and "HF_TOKEN" not in env
    assert plist["StandardOutPath"] == str(tmp_path / "data dir" / "logs" / "web.out.log")
    assert plist["StandardErrorPath"] == str(tmp_path / "data dir" / "logs" / "web.err.log")

    sup = plistlib.loads(launchd.render(supervisor))
    assert sup["Label"] == "com.mlxmanager.supervisor"
    assert sup["ProgramArguments"] == [PYTHON, str(BASE_DIR / "manage.py"), "runsupervisor"]
    assert sup["KeepAlive"] == {"SuccessfulExit": False}
    # A stopping supervisor gets time to finish and release its lock before launchd kills it.
    assert sup["ExitTimeOut"] >= 60
    assert sup["ProcessType"] == "Interactive"
    assert sup["AbandonProcessGroup"] is True
    assert sup["EnvironmentVariables"] == env


def read_unit(text: str) -> tuple[configparser.ConfigParser, dict[str, str]]:
    """The unit's keys (configparser) and its Environment= lines (repeated, so read apart)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    environment: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            (assignment,) = shlex.split(line.removeprefix("Environment="))
            key, _, value = assignment.replace("%%", "%").partition("=")
            environment[key] = value
    return parser, environment


def test_systemd_units_key_by_key(tmp_path: Path) -> None:
    target = make_target(tmp_path, "linux", DATABASE_URL="postgres://mlx:50%off@db/mlx", HF_HOME="/srv/hf home")
    systemd = Systemd(target)
    web, supervisor = app_services(target)

    unit, env = read_unit(systemd.render(supervisor).decode())
    service = unit["Service"]
    assert shlex.split(service["ExecStart"]) == [PYTHON, str(BASE_DIR / "manage.py"), "runsupervisor"]
    assert service["Restart"] == "on-failure"
    assert service["WorkingDirectory"] == str(BASE_DIR)
    # The model servers outlive a supervisor restart; the old one has time to let go of its lock.
    assert service["KillMode"] == "process"
    assert int(service["TimeoutStopSec"]) >= 60
    assert service["StandardOutput"] == f"append:{tmp_path / 'data dir' / 'logs' / 'supervisor.log'}"
    assert unit["Install"]["WantedBy"] == "default.target"
    assert env["MLXM_DATA_DIR"] == str(tmp_path / "data dir")
    assert env["DATABASE_URL"] == "postgres://mlx:50%off@db/mlx"
    assert env["HF_HOME"] == "/srv/hf home"
    assert env["PATH"].startswith(str(Path(PYTHON).parent) + ":")

    web_unit, _ = read_unit(systemd.render(web).decode())
    assert shlex.split(web_unit["Service"]["ExecStart"]) == GUNICORN_ARGV
    assert web_unit["Service"]["KillMode"] == "mixed"
    assert web_unit["Service"]["Restart"] == "on-failure"


@pytest.mark.debian
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze (Debian's `systemd` package) checks the units as systemd reads them: unknown
    keys, bad quoting, an ExecStart that is not executable. It needs a runtime dir for --user."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed: apt-get install -y systemd"
    target = make_target(tmp_path, "linux", DATABASE_URL="postgres://mlx:50%off@db/mlx")
    systemd = Systemd(target)
    paths = []
    for service in app_services(target):
        path = tmp_path / systemd.label_for(service)
        path.write_bytes(systemd.render(service))
        paths.append(str(path))
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        [analyze, "verify", "--user", *paths],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""

    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=/nonexistent/python\nRestart=sometimes\n")
    rejected = subprocess.run(
        [analyze, "verify", "--user", str(broken)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
        check=False,
    )
    assert rejected.returncode != 0 or rejected.stderr.strip(), "verify must catch a broken unit"


# --- --dry-run ---


@pytest.mark.django_db
def test_dry_run_on_macos_prints_and_changes_nothing(tmp_path: Path) -> None:
    target = make_target(tmp_path, "darwin")
    runner = RecordingRunner()
    out = run_command(target, runner, "--dry-run")
    agents = tmp_path / "home" / "Library" / "LaunchAgents"
    assert runner.calls == []
    assert not (tmp_path / "home").exists()
    assert f"Would write {agents / 'com.mlxmanager.web.plist'}:" in out
    assert f"Would write {agents / 'com.mlxmanager.supervisor.plist'}:" in out
    assert "<key>KeepAlive</key>" in out
    assert f"Would run: launchctl bootstrap gui/{UID} {agents / 'com.mlxmanager.supervisor.plist'}" in out
    assert f"Would run: launchctl bootout gui/{UID}/com.mlxmanager.web" in out
    assert "Would run: manage.py migrate --noinput" in out


@pytest.mark.django_db
def test_dry_run_on_linux_prints_and_changes_nothing(tmp_path: Path) -> None:
    target = make_target(tmp_path, "linux")
    runner = RecordingRunner()
    out = run_command(target, runner, "--dry-run")
    units = tmp_path / "home" / ".config" / "systemd" / "user"
    assert runner.calls == []
    assert not (tmp_path / "home").exists()
    assert f"Would write {units / 'mlx-manager-web.service'}:" in out
    assert "Restart=on-failure" in out
    assert "Would run: systemctl --user daemon-reload" in out
    assert "Would run: systemctl --user enable mlx-manager-web.service mlx-manager-supervisor.service" in out, out
    assert "Would run: systemctl --user restart mlx-manager-web.service mlx-manager-supervisor.service" in out


@pytest.mark.django_db
def test_uninstall_dry_run_removes_nothing(tmp_path: Path, static_root: Path) -> None:
    target = make_target(tmp_path, "linux")
    runner = RecordingRunner()
    run_command(target, runner)
    runner.calls.clear()
    out = run_command(target, runner, "--uninstall", "--dry-run")
    assert runner.calls == []
    assert (tmp_path / "home" / ".config" / "systemd" / "user" / "mlx-manager-web.service").exists()
    assert "Would remove" in out and "Would run: systemctl --user disable --now" in out


# --- install, --status, --uninstall ---


@pytest.mark.django_db
def test_install_uninstall_on_macos(tmp_path: Path, static_root: Path) -> None:
    target = make_target(tmp_path, "darwin")
    runner = RecordingRunner({("launchctl", "bootout"): CommandResult(3, "", "Boot-out failed: 3: No such process")})
    out = run_command(target, runner)
    agents = tmp_path / "home" / "Library" / "LaunchAgents"
    web, sup = agents / "com.mlxmanager.web.plist", agents / "com.mlxmanager.supervisor.plist"
    assert runner.calls == [
        ["launchctl", "bootout", f"gui/{UID}/com.mlxmanager.web"],
        ["launchctl", "enable", f"gui/{UID}/com.mlxmanager.web"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(web)],
        ["launchctl", "bootout", f"gui/{UID}/com.mlxmanager.supervisor"],
        ["launchctl", "enable", f"gui/{UID}/com.mlxmanager.supervisor"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(sup)],
    ]
    assert plistlib.loads(web.read_bytes())["Label"] == "com.mlxmanager.web"
    assert web.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data dir" / "logs").is_dir()
    assert (static_root / "css" / "site.css").exists(), "install collects the static files the service serves"
    assert "Installed." in out

    runner = RecordingRunner()
    run_command(target, runner, "--uninstall")
    assert runner.calls == [
        ["launchctl", "bootout", f"gui/{UID}/com.mlxmanager.web"],
        ["launchctl", "bootout", f"gui/{UID}/com.mlxmanager.supervisor"],
    ]
    assert not web.exists() and not sup.exists()


@pytest.mark.django_db
def test_install_uninstall_on_linux(tmp_path: Path, static_root: Path) -> None:
    target = make_target(tmp_path, "linux")
    runner = RecordingRunner()
    out = run_command(target, runner)
    units = ["mlx-manager-web.service", "mlx-manager-supervisor.service"]
    folder = tmp_path / "home" / ".config" / "systemd" / "user"
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", *units],
        ["systemctl", "--user", "restart", *units],
    ]
    assert all((folder / unit).is_file() for unit in units)
    assert "loginctl enable-linger" in out

    runner = RecordingRunner({("systemctl", "--user", "disable"): CommandResult(1, "", "Unit not loaded.")})
    run_command(target, runner, "--uninstall")
    assert runner.calls == [
        ["systemctl", "--user", "disable", "--now", *units],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert not any((folder / unit).exists() for unit in units)


LAUNCHCTL_PRINT = """gui/501/com.mlxmanager.web = {
\tactive count = 1
\tpath = /Users/me/Library/LaunchAgents/com.mlxmanager.web.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /Users/me/mlx-manager/.venv/bin/python
\tpid = 4242
}
"""


@pytest.mark.django_db
def test_status_on_macos(tmp_path: Path, static_root: Path) -> None:
    target = make_target(tmp_path, "darwin")
    run_command(target, RecordingRunner())
    runner = RecordingRunner(
        {
            ("launchctl", "print", f"gui/{UID}/com.mlxmanager.web"): CommandResult(0, LAUNCHCTL_PRINT),
            ("launchctl", "print", f"gui/{UID}/com.mlxmanager.supervisor"): CommandResult(
                113, "", "Could not find service"
            ),
        }
    )
    out = run_command(target, runner, "--status")
    assert runner.calls == [
        ["launchctl", "print", f"gui/{UID}/com.mlxmanager.web"],
        ["launchctl", "print", f"gui/{UID}/com.mlxmanager.supervisor"],
    ]
    lines = out.splitlines()
    assert lines[0].startswith("web: installed, running (pid 4242)")
    assert lines[1].startswith("supervisor: installed, not running [com.mlxmanager.supervisor: not loaded]")


@pytest.mark.django_db
def test_status_on_linux(tmp_path: Path) -> None:
    target = make_target(tmp_path, "linux")
    runner = RecordingRunner(
        {
            (
                "systemctl",
                "--user",
                "show",
                "--property=LoadState,ActiveState,SubState,MainPID",
                "mlx-manager-web.service",
            ): CommandResult(0, "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=777\n"),
            ("systemctl", "--user", "show"): CommandResult(
                0, "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n"
            ),
        }
    )
    out = run_command(target, runner, "--status")
    assert runner.calls == [
        ["systemctl", "--user", "show", "--property=LoadState,ActiveState,SubState,MainPID", unit]
        for unit in ("mlx-manager-web.service", "mlx-manager-supervisor.service")
    ]
    lines = out.splitlines()
    assert lines[0].startswith("web: not installed, running (pid 777) [mlx-manager-web.service: active (running)]")
    assert lines[1].startswith(
        "supervisor: not installed, not running [mlx-manager-supervisor.service: inactive (dead)]"
    )


@pytest.mark.django_db
def test_status_when_the_service_manager_cannot_be_reached(tmp_path: Path) -> None:
    target = make_target(tmp_path, "linux")
    runner = RecordingRunner({("systemctl",): CommandResult(1, "", "Failed to connect to bus: No medium found")})
    out = run_command(target, runner, "--status")
    assert "web: not installed, running: unknown" in out
    assert "no systemd user session here" in out and "loginctl enable-linger" in out  # said plainly
    assert "Failed to connect to bus" not in out


# --- failures are messages, not tracebacks ---


@pytest.mark.django_db
def test_a_failed_load_is_a_command_error(tmp_path: Path, static_root: Path) -> None:
    target = make_target(tmp_path, "darwin")
    runner = RecordingRunner(
        {("launchctl", "bootstrap"): CommandResult(5, "", "Bootstrap failed: 5: Input/output error")}
    )
    with pytest.raises(CommandError, match=r"launchctl bootstrap gui/501 .* failed \(5\): Bootstrap failed"):
        run_command(target, runner)
    # Tried again for a while (launchd may still be booting the old job out), then given up.
    assert [call[1] for call in runner.calls].count("bootstrap") == BOOTSTRAP_ATTEMPTS
    assert runner.pauses == [RETRY_PAUSE] * (BOOTSTRAP_ATTEMPTS - 1)


class BusyLaunchd(RecordingRunner):
    """launchd still tearing the old job down: the first two bootstraps fail with error 5."""

    def run(self, argv: Sequence[str]) -> CommandResult:
        result = super().run(argv)
        if argv[1] == "bootstrap" and [c[1] for c in self.calls].count("bootstrap") <= 2:
            return CommandResult(5, "", "Bootstrap failed: 5: Input/output error")
        return result


@pytest.mark.django_db
def test_bootstrap_is_tried_again_while_launchd_is_busy(tmp_path: Path, static_root: Path) -> None:
    runner = BusyLaunchd()
    out = run_command(make_target(tmp_path, "darwin"), runner)
    bootstraps = [call for call in runner.calls if call[1] == "bootstrap"]
    assert [call[3].rsplit("/", 1)[-1] for call in bootstraps] == [
        "com.mlxmanager.web.plist",
        "com.mlxmanager.web.plist",
        "com.mlxmanager.web.plist",
        "com.mlxmanager.supervisor.plist",
    ]
    assert runner.pauses == [RETRY_PAUSE, RETRY_PAUSE]
    assert "Installed." in out


@pytest.mark.django_db
def test_an_unsupported_platform_is_a_command_error(tmp_path: Path) -> None:
    target = make_target(tmp_path, "win32")
    runner = RecordingRunner()
    with pytest.raises(CommandError, match=r"supported on macOS .* and Linux"):
        run_command(target, runner, "--dry-run")
    assert runner.calls == []


def test_the_web_unit_runs_as_systemd_would_start_it(tmp_path: Path) -> None:
    """What the unit says (ExecStart, WorkingDirectory, Environment= and nothing else from this
    shell) is enough for gunicorn to serve the app: a real process answers /healthz."""
    port = free_port()
    target = make_target(tmp_path, "linux", HOST="127.0.0.1", PORT=str(port))
    web = app_services(target)[0]
    unit, env = read_unit(Systemd(target).render(web).decode())
    service = unit["Service"]
    process = subprocess.Popen(
        shlex.split(service["ExecStart"]),
        cwd=service["WorkingDirectory"],
        env={**env, "HOME": str(tmp_path / "home")},  # systemd's user manager adds HOME; nothing else
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answer = (response.status, response.read())
                    break
            except OSError:
                time.sleep(0.2)
        assert answer == (200, b'{"ok": true}'), process.communicate()[1].decode() if process.poll() is not None else ""
        assert (tmp_path / "data dir" / "secret_key").exists(), "the service used the data directory it was given"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _start_as_systemd_would(service: configparser.SectionProxy, env: dict[str, str], home: Path) -> Any:
    """ExecStart in WorkingDirectory with the unit's Environment= (and the HOME systemd's user
    manager adds), its output appended to the unit's StandardOutput= file. No systemd runs here
    (PID 1 is not systemd, and `systemd --user` refuses to start without it)."""
    output = Path(service["StandardOutput"].removeprefix("append:"))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as log:
        return subprocess.Popen(
            shlex.split(service["ExecStart"]),
            cwd=service["WorkingDirectory"],
            env={**env, "HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,  # StandardError=inherit
        )


def _db_row(database: Path, sql: str, *params: object) -> tuple[Any, ...] | None:
    import sqlite3

    try:
        with sqlite3.connect(database, timeout=5) as db:
            row: tuple[Any, ...] | None = db.execute(sql, params).fetchone()
            return row
    except sqlite3.OperationalError:  # the table is not there yet
        return None


@pytest.mark.mlx
@pytest.mark.timeout(300)
def test_the_supervisor_unit_runs_as_systemd_would_start_it(tmp_path: Path, tiny_model: Path) -> None:
    """The supervisor unit's ExecStart, WorkingDirectory and Environment= alone give a supervisor
    that beats its heartbeat into the data directory's database and starts a real model server
    when a Start is recorded; systemctl stop's SIGTERM (KillMode=process) ends it cleanly."""
    target = make_target(tmp_path, "linux")
    supervisor = app_services(target)[1]
    unit, env = read_unit(Systemd(target).render(supervisor).decode())
    service = unit["Service"]
    home = tmp_path / "home"
    manage = [PYTHON, "manage.py"]
    unit_env = {**env, "HOME": str(home)}
    subprocess.run([*manage, "migrate", "--noinput"], cwd=service["WorkingDirectory"], env=unit_env, check=True)
    database = tmp_path / "data dir" / "db.sqlite3"
    process = _start_as_systemd_would(service, env, home)
    server_pid = None
    try:
        beat = "SELECT heartbeat_at FROM nodes_node WHERE pid = ? AND heartbeat_at IS NOT NULL"
        deadline = time.monotonic() + 60
        while _db_row(database, beat, process.pid) is None:
            assert process.poll() is None, (tmp_path / "data dir" / "logs" / "supervisor.log").read_text()
            assert time.monotonic() < deadline, "no heartbeat from the supervisor unit within 60 s"
            time.sleep(0.2)

        port = free_port()
        start = (
            "from profiles.models import ServerProfile; from servers.services import server_start; "
            f"server_start(profile=ServerProfile.objects.create(name='tiny', model={str(tiny_model)!r}, port={port}), "
            "by=None)"
        )
        subprocess.run([*manage, "shell", "-c", start], cwd=service["WorkingDirectory"], env=unit_env, check=True)
        state = "SELECT state, pid FROM servers_server"
        deadline = time.monotonic() + 150
        while (row := _db_row(database, state)) is None or row[0] != "running":
            assert row is None or row[0] in ("stopped", "starting"), row
            assert time.monotonic() < deadline, f"the server is {row} after 150 s"
            time.sleep(0.5)
        server_pid = row[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        status = process.wait(timeout=90)
        if server_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server_pid, signal.SIGKILL)
    assert status == 0


def test_every_setting_the_app_reads_reaches_the_services_or_is_left_out_for_a_reason() -> None:
    """A setting added to settings.py and forgotten here would silently not apply when the app runs
    as a service (MLXM_CORS_ORIGINS and six others were)."""
    import re

    from system.service_plan import LEFT_OUT, PASSED_THROUGH

    read = set(re.findall(r'env\.\w+\(\s*"(MLXM_[A-Z_]+)"', (BASE_DIR / "mlxmanager" / "settings.py").read_text()))
    assert "MLXM_START_TIMEOUT" in read
    assert read - set(PASSED_THROUGH) - set(LEFT_OUT) == set()
    assert set(LEFT_OUT) <= read, "a reason kept for a setting the app no longer reads"
