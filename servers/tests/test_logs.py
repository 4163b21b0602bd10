"""Reading a server's log: the tail, new lines by offset, rotation, a missing file, a huge file."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from django.test import Client

from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.logtail import CHUNK_CAP, TAIL_BYTES, read_log

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
    log = tmp_path / "server.log"
    log.write_text(lines(0, 5))
    seen = read_log(log)
    with log.open("a") as handle:
        handle.write(lines(5, 8))
    log.rename(tmp_path / "server.log.1")  # what a size rotation does
    log.write_text(lines(8, 10))
    chunk = read_log(log, offset=seen.offset, inode=seen.inode)
    assert chunk.text == lines(5, 10)
    assert chunk.inode == log.stat().st_ino and chunk.offset == log.stat().st_size


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
    path.rename(path.with_name(path.name + ".1"))
    path.write_text("fresh start\n")
    html = user_client.get(
        f"/servers/{profile.pk}/log/?offset={old_size}&inode={old_inode}", headers=HTMX
    ).content.decode()
    assert "fresh start" in html and f"inode={path.stat().st_ino}" in html
    assert user_client.get(f"/servers/{profile.pk}/log/?offset=junk", headers=HTMX).status_code == 200


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
