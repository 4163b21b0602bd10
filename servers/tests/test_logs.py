"""Reading a server's log: the tail, new lines by offset, rotation, a missing file, a huge file."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.logtail import CHUNK_CAP, TAIL_BYTES, read_log
from servers.supervisor import logfile
from servers.supervisor.logfile import append_line, rotate_if_large

HTMX = {"HX-Request": "true"}


def lines(start: int, stop: int) -> str:
    return "".join(f"line {i}\n" for i in range(start, stop))


def bytes_read() -> int:
    """What this process has read through read() calls so far (Linux /proc accounting)."""
    text = Path("/proc/self/io").read_text()
    match = re.search(r"^rchar: (\d+)$", text, re.M)
    assert match
    return int(match.group(1))


def test_tail_then_only_new_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(lines(0, 10))
    first = read_log(log)
    assert first.text == lines(0, 10) and first.offset == log.stat().st_size and first.reset
    assert first.inode == log.stat().st_ino
    with log.open("a") as handle:
        handle.write(lines(10, 13) + "partial")
    second = read_log(log, offset=first.offset, inode=first.inode)
    assert second.text == lines(10, 13) and not second.reset
    with log.open("a") as handle:
        handle.write(" line\n")
    third = read_log(log, offset=second.offset, inode=second.inode)
    assert third.text == "partial line\n"
    assert read_log(log, offset=third.offset, inode=third.inode).text == ""


def test_first_view_starts_at_a_line_boundary(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(lines(0, 50_000))
    chunk = read_log(log)
    assert len(chunk.text) <= TAIL_BYTES
    assert chunk.text.startswith("line ") and chunk.text.endswith("line 49999\n")


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one(tmp_path: Path) -> None:
    """The supervisor's real rotation (copy to .1, truncate in place): nothing after the offset is lost."""
    log = tmp_path / "server-1.log"
    log.write_text(lines(0, 100))
    seen = read_log(log)
    with log.open("a") as handle:  # the server's own handle, as it holds it: O_APPEND, kept open
        handle.write(lines(100, 103))
        handle.flush()
        assert rotate_if_large(log, max_bytes=10, backups=3)
        handle.write(lines(103, 105))
    assert log.stat().st_ino == seen.inode  # same file, now short: only the shrink says it rotated
    chunk = read_log(log, offset=seen.offset, inode=seen.inode)
    marker = "--- log rotated: earlier lines are in server-1.log.1 ---\n"
    assert chunk.text == lines(100, 103) + marker + lines(103, 105)
    assert chunk.inode == log.stat().st_ino and chunk.offset == log.stat().st_size
    append_line(log, "line 105")
    assert read_log(log, offset=chunk.offset, inode=chunk.inode).text == "line 105\n"


def test_lines_written_during_the_copy_reach_the_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line the server writes while the copy runs (here: right after it) lands in .1, not nowhere."""
    log = tmp_path / "server-1.log"
    log.write_text(lines(0, 5))
    real_copy = shutil.copyfile

    def copy_then_server_writes(src: Path, dst: Path) -> object:
        done = real_copy(src, dst)
        append_line(log, "written during the copy")  # fault injection: the child writes mid-rotation
        return done

    monkeypatch.setattr(logfile.shutil, "copyfile", copy_then_server_writes)
    assert rotate_if_large(log, max_bytes=10, backups=3)
    assert (tmp_path / "server-1.log.1").read_text() == lines(0, 5) + "written during the copy\n"
    assert log.read_text() == "--- log rotated: earlier lines are in server-1.log.1 ---\n"


def test_a_file_replaced_by_another_is_read_from_its_start(tmp_path: Path) -> None:
    """Deleted and created again (a new inode), even longer than before: nothing of .1 is mixed in."""
    log = tmp_path / "server-1.log"
    log.write_text(lines(0, 5))
    seen = read_log(log)
    (tmp_path / "server-1.log.1").write_text(lines(0, 50))  # an older rotation, unrelated to this file
    log.unlink()
    log.write_text(lines(100, 110))
    # The reader's inode is not the file's (the OS may reuse a freed number, so say so outright).
    chunk = read_log(log, offset=seen.offset, inode=(seen.inode or 0) + 1)
    assert chunk.text == lines(100, 110) and chunk.offset == log.stat().st_size


def test_a_file_that_shrank_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(lines(0, 100))
    seen = read_log(log)
    log.write_text(lines(100, 102))  # truncated in place, same inode, smaller
    chunk = read_log(log, offset=seen.offset, inode=seen.inode)
    assert chunk.text == lines(100, 102)


def test_missing_file(tmp_path: Path) -> None:
    chunk = read_log(tmp_path / "nope.log")
    assert chunk.missing and chunk.text == "" and chunk.offset == 0
    later = read_log(tmp_path / "nope.log", offset=1234, inode=99)
    assert later.missing and later.reset  # the file went away: clear what is shown
    (tmp_path / "nope.log").write_text("hello\n")
    assert read_log(tmp_path / "nope.log", offset=0, inode=None).text == "hello\n"


def test_huge_log_reads_only_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as handle:
        handle.truncate(4 * 1024**3)  # 4 GiB, sparse: no disk used
        handle.seek(0, os.SEEK_END)
        handle.write(lines(0, 1000).encode())
    before = bytes_read()
    first = read_log(log)
    assert bytes_read() - before < TAIL_BYTES + 4096
    assert first.text.endswith("line 999\n") and first.offset == log.stat().st_size

    before = bytes_read()
    from_start = read_log(log, offset=0, inode=first.inode)  # a reader far behind
    assert bytes_read() - before < CHUNK_CAP + 4096
    assert from_start.reset and from_start.skipped > 4 * 1024**3 - CHUNK_CAP - 100
    assert from_start.text.endswith("line 999\n")


def test_a_burst_of_lines_is_returned_up_to_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("")
    seen = read_log(log)
    with log.open("a") as handle:
        handle.write(lines(0, 5000))  # thousands of lines in one second
    chunk = read_log(log, offset=seen.offset, inode=seen.inode)
    assert chunk.text == lines(0, 5000) and not chunk.skipped


# --- the views ---


def test_log_poll_returns_new_text_and_the_next_offset(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile()
    path = server_log_path(profile.pk)
    path.write_text(lines(0, 3))
    page = user_client.get(f"/servers/{profile.pk}/").content.decode()
    assert "line 2" in page
    offset = path.stat().st_size
    assert f"?offset={offset}&amp;inode={path.stat().st_ino}" in page
    with path.open("a") as handle:
        handle.write("<b>new</b> line\n")
    html = user_client.get(
        f"/servers/{profile.pk}/log/?offset={offset}&inode={path.stat().st_ino}", headers=HTMX
    ).content.decode()
    assert 'hx-swap-oob="beforeend:#log-lines"' in html
    assert "&lt;b&gt;new&lt;/b&gt; line" in html and "line 2" not in html
    assert f"?offset={path.stat().st_size}&amp;inode=" in html
    nothing = user_client.get(f"/servers/{profile.pk}/log/?offset={path.stat().st_size}", headers=HTMX).content.decode()
    assert "hx-swap-oob" not in nothing


def test_log_poll_after_rotation_and_for_a_missing_file(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile()
    path = server_log_path(profile.pk)
    path.unlink(missing_ok=True)
    html = user_client.get(f"/servers/{profile.pk}/").content.decode()
    assert "No log file yet" in html
    assert "No log file yet" in user_client.get(f"/servers/{profile.pk}/log/?offset=0", headers=HTMX).content.decode()
    path.write_text(lines(0, 100))
    old_inode, old_size = path.stat().st_ino, path.stat().st_size
    append_line(path, "after the last poll")
    assert rotate_if_large(path, max_bytes=100, backups=3)
    append_line(path, "fresh start")
    html = user_client.get(
        f"/servers/{profile.pk}/log/?offset={old_size}&inode={old_inode}", headers=HTMX
    ).content.decode()
    assert "after the last poll" in html and "fresh start" in html and "line 99" not in html
    assert f"offset={path.stat().st_size}&amp;inode={path.stat().st_ino}" in html
    # A malformed offset is refused as bad input (the query goes through a form), never a 500.
    assert user_client.get(f"/servers/{profile.pk}/log/?offset=junk", headers=HTMX).status_code == 400


def test_download_the_whole_log(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile("My Server")
    path = server_log_path(profile.pk)
    path.write_text(lines(0, 20_000))
    response = user_client.get(f"/servers/{profile.pk}/log/download/")
    assert response.status_code == 200
    assert f'filename="my-server-{profile.pk}.log"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == path.read_bytes()  # type: ignore[attr-defined]
    path.unlink()
    response = user_client.get(f"/servers/{profile.pk}/log/download/", follow=True)
    assert "has no log yet" in response.content.decode()
