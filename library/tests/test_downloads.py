"""Downloads through the real huggingface_hub client against the hub stand-in, run by the
DownloadRunner in this process (its `tick()` driven by the test, as the supervisor's loop does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from huggingface_hub import scan_cache_dir

from audit.models import AuditRecord
from library.downloads import READ_CHUNK, DownloadRunner, read_chunk_size
from library.local import cached_repo_ids, local_models
from library.models import Download, DownloadState
from library.services import download_cancel, download_queue
from testing.supervisor import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

MEDIUM = "mlx-community/Medium-Model-8bit"
TINY = "mlx-community/Tiny-Llama-4bit"
ROOT = Path(__file__).resolve().parents[2]


def drive(runner: DownloadRunner, pk: int, until: Callable[[Download], bool], timeout: float = 60.0) -> list[Download]:
    """Tick the runner like the supervisor does until `until(row)`; returns the rows seen."""
    seen: list[Download] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.tick()
        row = Download.objects.get(pk=pk)
        seen.append(row)
        if until(row):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"timed out; last row: {seen[-1].state} {seen[-1].bytes_done}/{seen[-1].bytes_total}")


def snapshot_file(repo_id: str, name: str) -> Path:
    repo = next(r for r in scan_cache_dir(settings.HF_HUB_CACHE).repos if r.repo_id == repo_id)
    (revision,) = repo.revisions
    return revision.snapshot_path / name


def expected(hub: Any, repo_id: str, name: str) -> bytes:
    return bytes(hub.repos[repo_id].files[name].content())


def test_progress_moves_to_completed_and_scan_cache_dir_finds_the_files(hub: Any) -> None:
    hub.bytes_per_second = 3_000_000  # 6 MiB take about two seconds
    download = download_queue(repo_id=MEDIUM, by=None)
    runner = DownloadRunner()
    try:
        seen = drive(runner, download.pk, lambda row: row.state in (DownloadState.COMPLETED, DownloadState.FAILED))
    finally:
        runner.shutdown()
    final = seen[-1]
    assert final.state == DownloadState.COMPLETED, final.error
    total = 6 * 1024 * 1024 + len(expected(hub, MEDIUM, "config.json"))
    assert final.bytes_total == total and final.bytes_done == total
    middle = {row.bytes_done for row in seen if row.state == DownloadState.DOWNLOADING and 0 < row.bytes_done < total}
    assert len(middle) >= 2, f"progress never moved in between: {middle}"
    assert any(row.speed_bps for row in seen if row.state == DownloadState.DOWNLOADING)
    assert snapshot_file(MEDIUM, "model.safetensors").read_bytes() == expected(hub, MEDIUM, "model.safetensors")
    assert MEDIUM in cached_repo_ids()
    assert [m.name for m in local_models()] == [MEDIUM]


def test_asking_again_joins_the_running_download(hub: Any) -> None:
    first = download_queue(repo_id=MEDIUM, by=None)
    again = download_queue(repo_id=MEDIUM, by=None)
    assert again.pk == first.pk
    assert Download.objects.count() == 1


def test_cancel_stops_it_and_leaves_no_half_model(hub: Any, empty_cache: Path) -> None:
    hub.bytes_per_second = 1_000_000
    download = download_queue(repo_id=MEDIUM, by=None)
    runner = DownloadRunner()
    try:
        drive(runner, download.pk, lambda row: row.bytes_done > 500_000)
        assert list(empty_cache.glob("*/blobs/*.incomplete")), "a partial file should exist mid-download"
        assert download_cancel(download=download, by=None)
        final = drive(
            runner, download.pk, lambda row: row.state not in (DownloadState.QUEUED, DownloadState.DOWNLOADING)
        )[-1]
    finally:
        runner.shutdown()
    assert final.state == DownloadState.CANCELLED
    assert final.bytes_done < (final.bytes_total or 0)  # it really stopped before the end
    assert MEDIUM not in cached_repo_ids()
    assert local_models() == []
    assert not list(empty_cache.glob("models--mlx-community--Medium-Model-8bit"))
    assert not list(empty_cache.rglob("*.incomplete"))


def test_connection_dropped_halfway_resumes_with_range_and_right_bytes(hub: Any) -> None:
    hub.drop_once.add((MEDIUM, "model.safetensors"))
    download = download_queue(repo_id=MEDIUM, by=None)
    runner = DownloadRunner()
    try:
        final = drive(runner, download.pk, lambda row: row.state in (DownloadState.COMPLETED, DownloadState.FAILED))[-1]
    finally:
        runner.shutdown()
    assert final.state == DownloadState.COMPLETED, final.error
    ranges = hub.file_requests(MEDIUM, "model.safetensors")
    assert ranges[0] is None and ranges[1] == f"bytes={3 * 1024 * 1024}-", ranges
    assert snapshot_file(MEDIUM, "model.safetensors").read_bytes() == expected(hub, MEDIUM, "model.safetensors")


def test_runner_stopped_halfway_then_a_new_runner_resumes_from_the_partial_file(hub: Any, empty_cache: Path) -> None:
    hub.bytes_per_second = 2_000_000
    download = download_queue(repo_id=MEDIUM, by=None)
    first = DownloadRunner()
    drive(first, download.pk, lambda row: row.bytes_done > 2_000_000)
    first.shutdown()
    row = Download.objects.get(pk=download.pk)
    assert row.state == DownloadState.QUEUED  # handed back, not completed, not failed
    (partial,) = empty_cache.glob("*/blobs/*.incomplete")
    kept = partial.stat().st_size
    assert kept > 1_000_000
    assert MEDIUM not in cached_repo_ids()

    hub.requests.clear()
    hub.bytes_per_second = None
    second = DownloadRunner()
    try:
        final = drive(second, download.pk, lambda r: r.state in (DownloadState.COMPLETED, DownloadState.FAILED))[-1]
    finally:
        second.shutdown()
    assert final.state == DownloadState.COMPLETED, final.error
    assert hub.file_requests(MEDIUM, "model.safetensors") == [f"bytes={kept}-"]
    assert snapshot_file(MEDIUM, "model.safetensors").read_bytes() == expected(hub, MEDIUM, "model.safetensors")


def test_killed_downloader_process_is_resumed_by_the_runner(hub: Any, empty_cache: Path) -> None:
    """`manage.py downloadmodel` runs the same code in its own process; kill -9 it halfway and the
    runner picks the orphaned row up again and resumes from the partial file."""
    hub.bytes_per_second = 1_500_000
    env = {**os.environ, "DATABASE_URL": database_url()}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "downloadmodel", MEDIUM],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = Download.objects.filter(repo_id=MEDIUM).first()
            if row and row.bytes_done > 1_500_000:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the command never made progress")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    row = Download.objects.get(repo_id=MEDIUM)
    assert row.state == DownloadState.DOWNLOADING and str(process.pid) in row.runner
    (partial,) = empty_cache.glob("*/blobs/*.incomplete")
    kept = partial.stat().st_size
    assert kept > 0

    hub.requests.clear()
    hub.bytes_per_second = None
    runner = DownloadRunner()
    try:
        final = drive(runner, row.pk, lambda r: r.state in (DownloadState.COMPLETED, DownloadState.FAILED))[-1]
    finally:
        runner.shutdown()
    assert final.state == DownloadState.COMPLETED, final.error
    assert hub.file_requests(MEDIUM, "model.safetensors") == [f"bytes={kept}-"]
    assert snapshot_file(MEDIUM, "model.safetensors").read_bytes() == expected(hub, MEDIUM, "model.safetensors")


def test_not_enough_disk_fails_with_both_numbers_and_writes_nothing(hub: Any, empty_cache: Path) -> None:
    """Honest: the stand-in declares a 200 TiB model (its bytes are generated on demand, never
    stored), which no disk here has room for; the check compares against the real free space."""
    download = download_queue(repo_id="mlx-community/Giant-Model-1T-8bit", by=None)
    runner = DownloadRunner()
    try:
        final = drive(
            runner, download.pk, lambda row: row.state not in (DownloadState.QUEUED, DownloadState.DOWNLOADING)
        )[-1]
    finally:
        runner.shutdown()
    assert final.state == DownloadState.FAILED
    assert "Not enough disk space" in final.error
    needed = 200 * 1024**4 + len(expected(hub, "mlx-community/Giant-Model-1T-8bit", "config.json"))
    assert f"({needed} bytes)" in final.error
    assert " bytes) is free" in final.error
    assert not list(empty_cache.glob("models--*"))
    assert not any(rng for rng in hub.file_requests("mlx-community/Giant-Model-1T-8bit", "model.safetensors"))


def test_unknown_repo_fails_with_a_message(hub: Any) -> None:
    download = download_queue(repo_id="mlx-community/No-Such-Model", by=None)
    runner = DownloadRunner()
    try:
        final = drive(runner, download.pk, lambda row: row.state == DownloadState.FAILED)[-1]
    finally:
        runner.shutdown()
    assert "No such model" in final.error
    trail = AuditRecord.objects.filter(subject="mlx-community/No-Such-Model")  # newest first
    assert [(r.action, r.who) for r in trail] == [("failed", "supervisor"), ("download", "supervisor")]
    assert "No such model" in trail[0].message


def test_at_most_two_downloads_at_once(hub: Any) -> None:
    hub.bytes_per_second = 500_000
    rows = [download_queue(repo_id=repo, by=None) for repo in (MEDIUM, TINY, "mlx-community/Qwen3-4B-4bit")]
    runner = DownloadRunner()
    try:
        runner.tick()
        states = [Download.objects.get(pk=row.pk).state for row in rows]
        assert states.count(DownloadState.DOWNLOADING) == 2
        assert states[2] == DownloadState.QUEUED
    finally:
        runner.shutdown()


def test_an_idle_runner_ticks_with_one_query_and_still_starts_the_next_download(
    hub: Any, django_assert_num_queries: Callable[..., Any]
) -> None:
    runner = DownloadRunner()
    try:
        first = download_queue(repo_id=TINY, by=None)
        drive(runner, first.pk, lambda row: row.state == DownloadState.COMPLETED)
        runner.wait()
        with django_assert_num_queries(1):  # the supervisor ticks it every few seconds
            runner.tick()
        second = download_queue(repo_id=MEDIUM, by=None)
        runner.tick()
        assert Download.objects.get(pk=second.pk).state != DownloadState.QUEUED
    finally:
        runner.shutdown()


def test_cancelling_a_stopped_download_removes_its_partial_files(hub: Any, empty_cache: Path) -> None:
    hub.bytes_per_second = 2_000_000
    download = download_queue(repo_id=MEDIUM, by=None)
    first = DownloadRunner()
    drive(first, download.pk, lambda row: row.bytes_done > 1_000_000)
    first.shutdown()
    assert list(empty_cache.glob("*/blobs/*.incomplete"))
    assert download_cancel(download=Download.objects.get(pk=download.pk), by=None)
    second = DownloadRunner()
    try:
        final = drive(second, download.pk, lambda row: row.state == DownloadState.CANCELLED)[-1]
    finally:
        second.shutdown()
    assert final.finished_at is not None
    assert not list(empty_cache.glob("models--*"))
    assert MEDIUM not in cached_repo_ids()


def test_downloadmodel_command_downloads_through_the_same_code(hub: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("downloadmodel", TINY, stdout=out, stderr=StringIO())
    assert "downloaded" in out.getvalue()
    row = Download.objects.get(repo_id=TINY)
    assert row.state == DownloadState.COMPLETED and row.bytes_done == row.bytes_total
    assert snapshot_file(TINY, "model.safetensors").read_bytes() == expected(hub, TINY, "model.safetensors")


def test_small_files_are_read_in_pieces_so_their_progress_moves() -> None:
    assert read_chunk_size(30_000) == 1_500  # a tiny model's weights: about twenty reads
    assert read_chunk_size(100) == 1024  # never absurdly small reads
    assert read_chunk_size(5 * 1024**3) == READ_CHUNK == 256 * 1024  # big files: 256 KiB reads
