"""The pieces around the loop: log rotation, the wake-up socket, the instance lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.wakeup import wake_local, wake_socket_path, wake_supervisor
from servers.supervisor.daemon import AlreadyRunning, InstanceLock, WakeSocket
from servers.supervisor.logfile import append_line, rotate_if_large, tail


def test_log_rotation_keeps_every_line_and_says_where_they_went(tmp_path: Path) -> None:
    log = tmp_path / "server-1.log"
    lines = [f"line {n}" for n in range(300)]
    for n, line in enumerate(lines):
        append_line(log, line)
        rotate_if_large(log, max_bytes=1000, backups=50)
        if n == 0:
            assert not rotate_if_large(log, max_bytes=1000, backups=50), "small files stay as they are"
    files = [*sorted(tmp_path.glob("server-1.log.*"), key=lambda p: -int(p.suffix[1:])), log]
    kept = [ln for f in files for ln in f.read_text().splitlines() if not ln.startswith("--- log rotated")]
    assert kept == lines
    assert log.read_text().startswith("--- log rotated: earlier lines are in server-1.log.1 ---")
    assert all(f.stat().st_size <= 1000 + 80 for f in files)


def test_rotation_drops_only_beyond_the_number_of_backups(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    for n in range(10):
        log.write_text(f"generation {n}\n" * 100)
        assert rotate_if_large(log, max_bytes=100, backups=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.log", "s.log.1", "s.log.2", "s.log.3"]
    assert (tmp_path / "s.log.1").read_text().startswith("generation 9")
    assert (tmp_path / "s.log.3").read_text().startswith("generation 7")


def test_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("".join(f"{n}\n" for n in range(1000)))
    assert tail(log, 3) == "997\n998\n999"
    assert tail(tmp_path / "missing.log") == ""


def test_wake_datagram_ends_the_wait_at_once(settings: Any, tmp_path: Path) -> None:
    settings.MLXM_DATA_DIR = tmp_path
    assert wake_local() is False, "nobody listening yet"
    wake = WakeSocket(wake_socket_path())
    try:
        assert wake.wait(0.05) is False, "nothing to wake it: the wait times out"
        assert wake_local() is True
        assert wake.wait(60.0) is True, "the datagram ended the wait (a timeout returns False)"
        assert wake.wait(0.01) is False, "the datagram was drained"
    finally:
        wake.close()
    assert not wake_socket_path().exists()


@pytest.mark.django_db
def test_on_sqlite_only_this_nodes_supervisor_can_be_woken(settings: Any, tmp_path: Path) -> None:
    """wake_supervisor(node=...) names the node; SQLite has no way to reach another machine."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite behaviour; PostgreSQL's NOTIFY is tested in servers/tests/test_postgres.py")
    settings.MLXM_DATA_DIR = tmp_path
    settings.MLXM_NODE_NAME = "studio"
    wake = WakeSocket(wake_socket_path())
    try:
        assert wake_supervisor(node="mini") is False, "another node: nothing reaches it on SQLite"
        assert wake.wait(0.05) is False
        assert wake_supervisor(node="studio") is True, "this node by name"
        assert wake.wait(60.0) is True
        assert wake_supervisor() is True, "no name: this node"
        assert wake.wait(60.0) is True
    finally:
        wake.close()


def test_instance_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path / "supervisor.lock")
    first.acquire()
    second = InstanceLock(tmp_path / "supervisor.lock")
    with pytest.raises(AlreadyRunning, match=r"Another supervisor \(PID \d+\) is already running"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
