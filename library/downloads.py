"""Downloads run inside the supervisor (and in `manage.py downloadmodel`), never in a web request.

The supervisor creates one DownloadRunner, calls `tick()` at every loop iteration and
`shutdown()` when it stops. Each download runs in its own thread (at most two at once):

1. ask the Hub for the files and their sizes (`HfApi.model_info(files_metadata=True)`) and each
   file's ETag (`get_hf_file_metadata`, the client's own HEAD);
2. check free disk space against what is still missing, before writing anything;
3. fetch each missing blob through the client's shared HTTP session (`get_session`) into the
   cache's own partial-file name, `<cache>/models--org--name/blobs/<etag>.incomplete`, appending
   from where a previous run stopped (HTTP Range); huggingface_hub 2.x's own downloader writes to
   a fresh uniquely named temporary file and deletes it on failure, so it cannot resume across a
   supervisor restart;
4. hand over to `snapshot_download`, which finds the blobs in place and lays out the snapshot
   (refs, tree cache, symlinks) exactly as the client always does; only then is the row
   `completed`, after checking every file is there.

Until step 4 the repo has no snapshot, so `scan_cache_dir` never lists a half model.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub.constants as hf_constants
import psutil
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from huggingface_hub import HfApi, get_hf_file_metadata, get_session, hf_hub_url, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status
from tqdm.auto import tqdm

from audit.models import AuditKind
from audit.services import audit_record
from core.formatting import human_bytes
from library.local import disk_free
from library.models import Download, DownloadState
from nodes.selectors import this_node_id

PROGRESS_EVERY = 0.5  # seconds between progress writes
# Progress, cancel and stop act between two reads: 256 KiB pieces let them act within a second
# (the client's own downloader reads 10 MiB at a time, set only by a global of its own).
READ_CHUNK = 256 * 1024
READ_RETRIES = 5  # a connection dropped mid-file is resumed where it stopped, this many times
# What a dropped or stalled connection raises (the client's http library): worth resuming.
TRANSIENT = (httpx2.ConnectError, httpx2.TimeoutException, httpx2.RemoteProtocolError)

logger = logging.getLogger(__name__)
FINAL_STATES = (DownloadState.COMPLETED, DownloadState.FAILED, DownloadState.CANCELLED)


class Cancelled(Exception):
    """The user cancelled: partial files are removed."""


class Interrupted(Exception):
    """The runner is stopping: partial files stay for the next run."""


class NotEnoughDisk(Exception):
    pass


def read_chunk_size(size: int) -> int:
    """How many bytes to read at a time for a file of `size` bytes: 256 KiB, or about a
    twentieth of a smaller file, so its progress still moves on a slow link."""
    return max(1024, min(READ_CHUNK, size // 20))


def runner_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def runner_is_dead(runner: str) -> bool:
    """A runner on this host whose process is gone (killed, crashed)."""
    host, _, rest = runner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


def repo_storage(repo_id: str, cache: Path) -> Path:
    """The repo's folder in the cache, refused if it would land outside the cache."""
    storage = (cache / repo_folder_name(repo_id=repo_id, repo_type="model")).resolve()
    if storage.parent != cache.resolve():
        raise ValueError(f"{repo_id!r} does not name a folder inside the cache")
    return storage


def remove_partial(repo_id: str, cache: Path) -> None:
    """Remove what an unfinished download left: partial blobs, blobs no snapshot uses, and the
    repo folder itself when it has no snapshot at all."""
    storage = repo_storage(repo_id, cache)
    if not storage.exists():
        return
    snapshots = storage / "snapshots"
    linked = {os.path.realpath(p) for p in snapshots.rglob("*")} if snapshots.exists() else set()
    if not any(Path(p).is_file() for p in linked):
        shutil.rmtree(storage, ignore_errors=True)
        return
    for blob in (storage / "blobs").glob("*"):
        if blob.name.endswith(".incomplete") or os.path.realpath(blob) not in linked:
            blob.unlink(missing_ok=True)


class Progress:
    """Counts bytes, writes them with the speed to the row every PROGRESS_EVERY seconds, and
    turns a cancel request or a stop into an exception inside the transfer."""

    def __init__(self, download_id: int, stop: threading.Event) -> None:
        self.download_id = download_id
        self.stop = stop
        self.done = 0
        self.total = 0
        self.samples: deque[tuple[float, int]] = deque()
        self.last_write = 0.0

    def start(self, *, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.samples.append((time.monotonic(), done))
        self.flush(force=True)

    def add(self, count: int) -> None:
        self.done += count
        self.flush()

    def speed(self, now: float) -> float | None:
        while len(self.samples) > 1 and now - self.samples[0][0] > 5.0:
            self.samples.popleft()
        first_time, first_done = self.samples[0]
        return (self.done - first_done) / (now - first_time) if now - first_time > 0.2 else None

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < PROGRESS_EVERY:
            return
        self.last_write = now
        self.samples.append((now, self.done))
        Download.objects.filter(pk=self.download_id).update(
            bytes_done=min(self.done, self.total) if self.total else self.done,
            bytes_total=self.total or None,
            speed_bps=self.speed(now),
            heartbeat_at=timezone.now(),
        )
        self.check()

    def check(self) -> None:
        if self.stop.is_set():
            raise Interrupted
        if Download.objects.filter(pk=self.download_id, cancel_requested=True).exists():
            raise Cancelled


class QuietTqdm(tqdm):
    """The client's own bars stay off: progress is the row's (and the command's single bar)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


@dataclass
class Piece:
    name: str
    size: int
    url: str
    etag: str


def fetch_repo(download: Download, *, cache: Path, progress: Progress) -> None:
    """Bring the download's repo into the cache (steps 1-4 in the module's docstring)."""
    info = HfApi().model_info(download.repo_id, revision=download.revision, files_metadata=True)
    assert info.sha is not None
    files = [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    storage = repo_storage(download.repo_id, cache)
    snapshot = storage / "snapshots" / info.sha
    total = sum(size for _, size in files)
    have = 0
    pieces: list[Piece] = []
    for name, size in files:
        if (snapshot / name).is_file():
            have += size
            continue
        meta = get_hf_file_metadata(hf_hub_url(download.repo_id, name, revision=info.sha))
        if meta.etag is None:
            raise OSError(f"The Hub sent no ETag for {name}")
        blob = storage / "blobs" / meta.etag
        if blob.is_file():
            have += size
            continue
        partial = blob.with_name(f"{meta.etag}.incomplete")
        have += partial.stat().st_size if partial.is_file() else 0
        if meta.xet_file_data is None:  # Xet-backed files are left to snapshot_download
            pieces.append(Piece(name, size, meta.location, meta.etag))
    needed = total - have
    free = disk_free(cache)
    if needed > free:
        raise NotEnoughDisk(
            f"Not enough disk space: {download.repo_id} needs {human_bytes(needed)} ({needed} bytes) more, "
            f"but only {human_bytes(free)} ({free} bytes) is free at {cache}."
        )
    progress.start(total=total, done=have)
    for piece in pieces:
        blobs = storage / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        partial = blobs / f"{piece.etag}.incomplete"
        if partial.is_file() and partial.stat().st_size > piece.size:
            partial.unlink()  # not a prefix of this file: start it again
        piece_fetch(piece, partial, progress)
        if partial.stat().st_size != piece.size:
            partial.unlink()
            raise OSError(f"{piece.name} arrived with the wrong size; it will be fetched again")
        os.replace(partial, blobs / piece.etag)
    progress.flush(force=True)
    # The client lays out the snapshot around the blobs already in place (and fetches any
    # Xet-backed file itself).
    snapshot_download(
        download.repo_id, revision=download.revision, cache_dir=cache, max_workers=2, tqdm_class=QuietTqdm
    )
    missing = [name for name, _ in files if not (snapshot / name).is_file()]
    if missing:
        raise OSError(f"Files missing after the download: {', '.join(missing[:5])}")
    progress.done = total
    progress.flush(force=True)


def piece_fetch(piece: Piece, partial: Path, progress: Progress) -> None:
    """Append the rest of `piece` to `partial` (HTTP Range from its size), through the client's
    shared HTTP session (`get_session`: its proxy, transport and headers apply), counting each
    read in `progress`, which raises there on a cancel or a stop."""
    chunk = read_chunk_size(piece.size)
    for attempt in range(READ_RETRIES + 1):
        with partial.open("ab") as handle:
            resume = handle.tell()
            headers = build_hf_headers() | ({"Range": f"bytes={resume}-"} if resume else {})
            try:
                with get_session().stream(
                    "GET",
                    piece.url,
                    headers=headers,
                    timeout=hf_constants.HF_HUB_DOWNLOAD_TIMEOUT,
                    follow_redirects=True,
                ) as response:
                    hf_raise_for_status(response)
                    if resume and response.status_code == 200:  # the Range was ignored: all again
                        handle.truncate(0)
                        progress.add(-resume)
                    for data in response.iter_bytes(chunk_size=chunk):
                        handle.write(data)
                        progress.add(len(data))
                return
            except TRANSIENT as exc:
                if attempt == READ_RETRIES:
                    raise
                logger.warning("%s: %s; resuming", piece.name, exc)
        time.sleep(1)


def describe(error: BaseException) -> str:
    if isinstance(error, RepositoryNotFoundError):
        return "No such model on the Hub (or it is private and no token is set)."
    if isinstance(error, RevisionNotFoundError):
        return "No such revision of this model on the Hub."
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return f"The Hub answered with an error (HTTP {status}): {str(error).splitlines()[0]}"
    return f"{type(error).__name__}: {error}"


def _finish(download_id: int, state: DownloadState, error: str = "") -> None:
    Download.objects.filter(pk=download_id).update(
        state=state, error=error, finished_at=timezone.now(), speed_bps=None, runner=""
    )
    repo_id = Download.objects.filter(pk=download_id).values_list("repo_id", flat=True).first()
    audit_record(
        kind=AuditKind.DOWNLOAD, action=state.value, subject=repo_id or f"download {download_id}", message=error
    )


def claim(download_id: int, runner_id: str) -> bool:
    """Take a queued row for this runner; False when someone else took it first."""
    now = timezone.now()
    return (
        Download.objects.filter(pk=download_id, state=DownloadState.QUEUED, cancel_requested=False).update(
            state=DownloadState.DOWNLOADING, runner=runner_id, heartbeat_at=now, started_at=now, error=""
        )
        == 1
    )


def download_execute(download_id: int, *, runner_id: str, stop: threading.Event) -> None:
    """Run one claimed download to its end (completed, failed, cancelled) or, on stop, hand it
    back to the queue with its partial files kept."""
    cache = Path(settings.HF_HUB_CACHE)
    try:
        download = Download.objects.get(pk=download_id)
        progress = Progress(download_id, stop)
        try:
            progress.check()
            fetch_repo(download, cache=cache, progress=progress)
        except Cancelled:
            remove_partial(download.repo_id, cache)
            _finish(download_id, DownloadState.CANCELLED)
        except Interrupted:
            Download.objects.filter(pk=download_id, runner=runner_id).update(
                state=DownloadState.QUEUED, runner="", speed_bps=None
            )
        except NotEnoughDisk as error:
            _finish(download_id, DownloadState.FAILED, str(error))
        except Exception as error:
            logger.warning("download %s of %s failed", download_id, download.repo_id, exc_info=True)
            _finish(download_id, DownloadState.FAILED, describe(error))
        else:
            _finish(download_id, DownloadState.COMPLETED)
    finally:
        connection.close()


class DownloadRunner:
    """Runs this node's downloads only: another node's download goes into that node's cache."""

    def __init__(self, *, max_parallel: int = 2, stale_after: float = 30.0) -> None:
        self.runner_id = runner_identity()
        self._node_id: int | None = None  # read at the first tick: the database may be away now
        self.max_parallel = max_parallel
        self.stale_after = stale_after
        self.stop = threading.Event()
        self.jobs: dict[int, tuple[str, threading.Thread]] = {}

    def tick(self) -> None:
        """Start queued downloads (at most two at a time), act on cancellations, record progress."""
        if self.stop.is_set():
            return
        try:
            self._tick()
        except DatabaseError:  # a busy database is retried at the next tick
            logger.warning("download runner tick failed", exc_info=True)

    def _tick(self) -> None:
        self.jobs = {pk: job for pk, job in self.jobs.items() if job[1].is_alive()}
        if not self.jobs and not self.ours().exclude(state__in=FINAL_STATES).exists():
            return  # nothing to run, recover or cancel: one query, as an idle supervisor ticks often
        now = timezone.now()
        self.ours().filter(runner=self.runner_id, state=DownloadState.DOWNLOADING).update(heartbeat_at=now)
        self._recover_orphans(now)
        self._cancel_queued()
        busy = {repo for repo, _ in self.jobs.values()}
        while len(self.jobs) < self.max_parallel:
            candidate = (
                self.ours()
                .filter(state=DownloadState.QUEUED, cancel_requested=False)
                .exclude(repo_id__in=busy)
                .order_by("created_at", "pk")
                .first()
            )
            if candidate is None:
                break
            if not claim(candidate.pk, self.runner_id):
                continue
            thread = threading.Thread(
                target=download_execute,
                args=(candidate.pk,),
                kwargs={"runner_id": self.runner_id, "stop": self.stop},
                name=f"download-{candidate.pk}",
                daemon=True,
            )
            self.jobs[candidate.pk] = (candidate.repo_id, thread)
            busy.add(candidate.repo_id)
            thread.start()

    def ours(self) -> QuerySet[Download]:
        """This node's downloads."""
        if self._node_id is None:
            self._node_id = this_node_id()
        return Download.objects.filter(node_id=self._node_id)

    def _recover_orphans(self, now: Any) -> None:
        """Rows left `downloading` by a runner that died go back to the queue; their partial
        files are still in the cache, so they resume."""
        stale = now - timedelta(seconds=self.stale_after)
        others = self.ours().filter(state=DownloadState.DOWNLOADING).exclude(runner=self.runner_id)
        others.filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)).update(
            state=DownloadState.QUEUED, runner="", speed_bps=None
        )
        for pk, runner in others.values_list("pk", "runner"):
            if runner_is_dead(runner):
                Download.objects.filter(pk=pk, runner=runner).update(
                    state=DownloadState.QUEUED, runner="", speed_bps=None
                )

    def _cancel_queued(self) -> None:
        cache = Path(settings.HF_HUB_CACHE)
        for download in self.ours().filter(state=DownloadState.QUEUED, cancel_requested=True):
            if not self.ours().filter(repo_id=download.repo_id, state=DownloadState.DOWNLOADING).exists():
                remove_partial(download.repo_id, cache)
            _finish(download.pk, DownloadState.CANCELLED)

    def wait(self, timeout: float = 30.0) -> None:
        for _, thread in list(self.jobs.values()):
            thread.join(timeout)

    def shutdown(self) -> None:
        """Stop running downloads, leaving their partial files to resume from."""
        self.stop.set()
        self.wait()
