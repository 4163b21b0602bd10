"""A live server's log rotated by the real supervisor (a small MLXM_LOG_MAX_BYTES) while the log
view follows it through gunicorn: the page's polled partial keeps showing new lines across the
rotations, each line once, none lost.

The lines are the model server's own: each `GET /mark-NNNN` it answers 404 and logs, so every
line can be told apart and counted."""

from __future__ import annotations

import html
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from conftest import PASSWORD
from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.models import Server
from servers.services import server_start
from servers.states import State
from testing.net import free_port
from testing.supervisor import wait_for
from testing.web import HttpClient, WebServer

pytestmark = [pytest.mark.mlx, pytest.mark.timeout(600)]

LOG_MAX_BYTES = 4096
ROTATED = "--- log rotated: earlier lines are in"
MARK = re.compile(r"GET /mark-(\d{5}) ")
POLLER = re.compile(r'hx-get="[^"]*\?offset=(\d+)(?:&amp;inode=(\d+))?"')
OOB = re.compile(r'<div hx-swap-oob="(innerHTML|beforeend):#log-lines">(.*?)</div>', re.S)


@dataclass
class LogView:
    """What the page's log view shows, polled as its htmx poller polls (offset and inode)."""

    client: HttpClient
    profile_id: int
    offset: int
    inode: str | None
    text: str = ""
    resets: list[str] = field(default_factory=list)

    def poll(self) -> None:
        query = f"offset={self.offset}" + (f"&inode={self.inode}" if self.inode else "")
        answer = self.client.get(f"/servers/{self.profile_id}/log/?{query}")
        assert answer.status == 200, answer.text[:300]
        poller = POLLER.search(answer.text)
        assert poller, answer.text[:300]
        self.offset, self.inode = int(poller[1]), poller[2]
        for swap, content in OOB.findall(answer.text):
            text = html.unescape(re.sub(r"<[^>]+>", "", content))
            if swap == "innerHTML":  # the view was told to drop what it showed
                self.resets.append(text[:200])
                self.text = ""
            self.text += text

    def marks(self) -> list[int]:
        return [int(found[1]) for found in MARK.finditer(self.text)]


def _send_marks(port: int, sent: list[int], stop: threading.Event) -> None:
    """One request at a time: the server writes its log line before it answers."""
    n = 0
    while not stop.is_set():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/mark-{n:05d}", timeout=10)
        except urllib.error.HTTPError as answer:
            assert answer.code == 404
        sent.append(n)
        n += 1
        time.sleep(0.03)


@pytest.fixture
def rotating_server(supervisor_process: Any, tiny_model: Path, tmp_path: Path, admin_user: User) -> Iterator[Any]:
    supervisor_process.start(env={"MLXM_LOG_MAX_BYTES": str(LOG_MAX_BYTES)})
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port())
    server_start(profile=profile, by=None)
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what="tiny to run")
    supervisor_process.remember_servers()
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        yield profile, web
    finally:
        web.stop()


def test_the_log_view_follows_a_live_log_across_rotations_without_losing_or_repeating_a_line(
    rotating_server: Any, admin_user: User
) -> None:
    profile, web = rotating_server
    client = HttpClient(web.url)
    client.login(admin_user.email, PASSWORD)
    page = client.get(f"/servers/{profile.pk}/")
    assert page.status == 200
    poller = POLLER.search(page.text)
    assert poller, "the server page has no log poller"
    view = LogView(client, profile.pk, offset=int(poller[1]), inode=poller[2])

    sent: list[int] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send_marks, args=(profile.port, sent, stop), daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 120
        while view.text.count(ROTATED) < 3:
            assert time.monotonic() < deadline, f"no third rotation in the view; it shows:\n{view.text[-2000:]}"
            view.poll()
            time.sleep(0.25)
    finally:
        stop.set()
        sender.join(timeout=30)
    last = sent[-1]

    def shows_the_last() -> bool:
        view.poll()
        return last in view.marks()

    wait_for(shows_the_last, timeout=30, what=f"mark {last} in the view")

    log = server_log_path(profile.pk)
    assert log.with_name(log.name + ".3").exists(), "the supervisor did not rotate the log three times"
    assert view.resets == [], "the view dropped what it showed"
    # Every line the server wrote since the page was opened, in order, each once.
    assert view.marks() == sent, _difference(view.marks(), sent)


def _difference(shown: list[int], sent: list[int]) -> str:
    repeated = sorted({n for n in shown if shown.count(n) > 1})
    lost = sorted(set(sent) - set(shown))
    return f"{len(sent)} lines written, {len(shown)} shown; repeated: {repeated[:20]}; lost: {lost[:20]}"
