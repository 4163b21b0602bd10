"""`python manage.py runsupervisor`: run, watch and restart the model servers (foreground)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from library.downloads import DownloadRunner
from servers.supervisor.daemon import AlreadyRunning, Daemon
from servers.supervisor.host import RealHost
from servers.supervisor.loop import Supervisor
from servers.supervisor.policy import Policy


class Command(BaseCommand):
    help = "Run the supervisor: start, watch, restart and stop the model servers; run the downloads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one tick and exit (servers keep running).")

    def handle(self, *args: Any, **options: Any) -> None:
        supervisor = Supervisor(host=RealHost(), policy=Policy.from_settings(), downloads=DownloadRunner())
        try:
            Daemon(supervisor, once=options["once"]).run()
        except AlreadyRunning as exc:
            raise CommandError(str(exc)) from None
