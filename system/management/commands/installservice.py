"""`manage.py installservice`: run the web server and the supervisor as OS services that start at
login and come back after a crash (launchd LaunchAgents on macOS, systemd user units on Linux)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from system.service_install import (
    current_target,
    manage_command,
    services_install,
    services_status,
    services_uninstall,
)
from system.service_plan import Runner, ServiceError, SubprocessRunner, Target


class Command(BaseCommand):
    help = "Install (or with --uninstall remove) the web server and the supervisor as OS services."

    # Tests set these two: launchctl and systemctl cannot run in CI, and the home must be a temp dir.
    runner: Runner = SubprocessRunner()
    target: Target | None = None
    pause: Callable[[float], None] = staticmethod(time.sleep)

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--status", action="store_true", help="Say whether each service is installed and running.")
        group.add_argument("--uninstall", action="store_true", help="Stop the services and remove their definitions.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be written and run; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = self.target or current_target()
        try:
            if options["status"]:
                self.show_status(target)
            elif options["uninstall"]:
                self.report(services_uninstall(target=target, runner=self.runner, dry_run=options["dry_run"]), options)
            else:
                self.install(target, dry_run=options["dry_run"])
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc

    def install(self, target: Target, *, dry_run: bool) -> None:
        prepare = ["migrate --noinput", "collectstatic --noinput"]
        if dry_run:
            for step in prepare:
                self.stdout.write(f"Would run: manage.py {step}")
        else:
            # The services serve what is on disk: the schema and the static files must be current.
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
        self.report(
            services_install(target=target, runner=self.runner, dry_run=dry_run, pause=self.pause), {"dry_run": dry_run}
        )
        if not dry_run:
            self.stdout.write(self.style.SUCCESS("Installed. Check with: " + manage_command(target, "--status")))
            if target.platform == "linux":
                self.stdout.write("To start them at boot without logging in, run once: loginctl enable-linger $USER")

    def report(self, lines: list[str], options: dict[str, Any]) -> None:
        prefix = "Would " if options["dry_run"] else ""
        for line in lines:
            self.stdout.write(prefix + line)

    def show_status(self, target: Target) -> None:
        for status in services_status(target=target, runner=self.runner):
            installed = "installed" if status.installed else "not installed"
            if status.running is None:
                running = "running: unknown"
            elif status.running:
                running = f"running (pid {status.pid})" if status.pid else "running"
            else:
                running = "not running"
            self.stdout.write(f"{status.name}: {installed}, {running} [{status.label}: {status.detail}] {status.path}")
