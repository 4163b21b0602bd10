"""`manage.py downloadmodel REPO_ID`: the same download the web page queues, with a progress bar.

It queues (or joins) the download row, then runs it in this process unless a supervisor has
already taken it, in which case it follows the supervisor's progress. Ctrl-C stops it and keeps
the partial files: the next run, or the supervisor, resumes from them."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from library.downloads import FINAL_STATES, claim, download_execute, runner_identity
from library.models import Download, DownloadState
from library.services import LibraryError, download_queue


class Command(BaseCommand):
    help = "Download a model from the Hugging Face Hub into the cache, with a progress bar."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("repo_id")
        parser.add_argument("--revision", default="main")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request would bury the bar
        try:
            download = download_queue(repo_id=options["repo_id"], revision=options["revision"], by=None)
        except LibraryError as problem:
            raise CommandError(str(problem)) from None
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        runner_id = runner_identity()
        worker: threading.Thread | None = None
        bar = tqdm(desc=download.repo_id, unit="B", unit_scale=True, unit_divisor=1000, total=None)
        try:
            while True:
                if worker is None and not stop.is_set() and claim(download.pk, runner_id):
                    worker = threading.Thread(
                        target=download_execute, args=(download.pk,), kwargs={"runner_id": runner_id, "stop": stop}
                    )
                    worker.start()
                elif worker is not None and worker.is_alive():
                    Download.objects.filter(pk=download.pk, runner=runner_id).update(heartbeat_at=timezone.now())
                download.refresh_from_db()
                if download.bytes_total and bar.total != download.bytes_total:
                    bar.total = download.bytes_total
                bar.n = download.bytes_done
                bar.refresh()
                if download.state in FINAL_STATES or (stop.is_set() and (worker is None or not worker.is_alive())):
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            stop.set()
            if worker is not None:
                worker.join()
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, previous)
        download.refresh_from_db()
        if download.state == DownloadState.COMPLETED:
            self.stdout.write(self.style.SUCCESS(f"{download.repo_id}: downloaded ({download.bytes_done} bytes)."))
        elif download.state in FINAL_STATES:
            raise CommandError(f"{download.repo_id}: {download.state}. {download.error}".strip())
        else:
            self.stdout.write(f"{download.repo_id}: stopped; run again to resume.")
