"""The System page in a real Chromium: it renders, refreshes itself through htmx, and fits a phone."""

from __future__ import annotations

import math
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshot, screenshots
from library.models import Download, DownloadState
from profiles.models import ServerProfile
from servers.models import Server, ServerState, SystemSample
from testing.nodes import set_node

GB = 1024**3


def seed_a_busy_hour() -> None:
    now = timezone.now()
    set_node(
        pid=4321, hostname="studio", started_at=now - timedelta(minutes=47), heartbeat_at=now - timedelta(seconds=1)
    )
    for index, (name, rss) in enumerate((("Qwen3 4B", 3 * GB), ("Llama 3.2 1B", GB))):
        profile = ServerProfile.objects.create(name=name, model=f"mlx-community/model-{index}", port=8200 + index)
        Server.objects.create(profile=profile, state=ServerState.RUNNING, pid=5000 + index, rss_bytes=rss)
    Download.objects.create(
        repo_id="mlx-community/Mistral-7B-4bit", state=DownloadState.DOWNLOADING, bytes_done=3 * GB, bytes_total=4 * GB
    )
    for minute in range(60, 0, -1):
        servers = (1 if minute > 40 else 4) * GB
        SystemSample.objects.create(
            taken_at=now - timedelta(minutes=minute),
            memory_total=24 * GB,
            memory_available=int(24 * GB - servers - (5 + math.sin(minute / 6)) * GB),
            memory_used_by_servers=servers,
        )


@pytest.mark.browser
def test_system_page_in_a_browser(live_server: Any, page: Any, admin_user: User) -> None:
    seed_a_busy_hour()
    browser_login(page, live_server.url, admin_user.email)
    page.goto(f"{live_server.url}/system/")
    page.wait_for_selector("#memory")
    assert page.locator("h1").inner_text() == "System"
    assert page.locator("#supervisor-state").inner_text() == "running"
    assert page.locator("#supervisor-pid").inner_text() == "4321 on studio"
    assert page.locator("svg.memchart polyline.used-line").count() == 1
    assert page.locator("#services").is_visible()
    assert "installservice --uninstall" in page.locator("#uninstall-command").inner_text()
    screenshot(page, "system-desktop")

    # The live part refreshes itself: the supervisor restarts with a new PID and the page shows it.
    now = timezone.now()
    set_node(pid=8765, started_at=now, heartbeat_at=now)
    with page.expect_request(lambda r: r.url.endswith("/system/") and r.headers.get("hx-request") == "true"):
        pass
    expect(page.locator("#supervisor-pid")).to_have_text(re.compile(r"^\s*8765"), timeout=12_000)
    # Morphed into the page: a path being selected stays selected, and the bars keep their width.
    page.evaluate(
        "document.getElementById('system-live').kept = true; const range = document.createRange();"
        " range.selectNodeContents(document.querySelector('#hub-cache dd.mono'));"
        " getSelection().removeAllRanges(); getSelection().addRange(range);"
    )
    selected = page.evaluate("getSelection().toString()")
    assert selected.strip()
    set_node(pid=8766)
    expect(page.locator("#supervisor-pid")).to_have_text(re.compile(r"^\s*8766"), timeout=12_000)
    assert page.evaluate("document.getElementById('system-live').kept") is True
    assert page.evaluate("getSelection().toString()") == selected, "the poll dropped the selection"
    expect(page.locator("#system-live .membar .mem-servers")).to_have_attribute("style", re.compile(r"width: [\d.]+%"))

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#memory")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    screenshot(page, "system-phone")


@pytest.mark.browser
def test_system_page_without_a_supervisor_for_a_plain_user(live_server: Any, page: Any, approved_user: User) -> None:
    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/system/")
    page.wait_for_selector("#memory")
    assert page.locator("#supervisor-state").inner_text() == "not running"
    assert "python manage.py runsupervisor" in page.locator("#supervisor").inner_text()
    assert page.locator("#services").count() == 0
    screenshot(page, "system-no-supervisor")


@pytest.mark.browser
@pytest.mark.skipif(sys.platform == "darwin", reason="what the page says on Linux")
def test_the_system_page_on_linux_says_machine_and_explains_systemctl_plainly(
    live_server: Any, page: Any, admin_user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No "this Mac" on Linux; and a systemctl that cannot reach a user session (a container, SSH
    without lingering) is told in words, not as its raw error. The `systemctl` here is a stand-in
    answering as the real one does without a user bus (this page's own process runs it)."""
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    cache.delete("system:service-status")
    seed_a_busy_hour()
    browser_login(page, live_server.url, admin_user.email)
    page.goto(f"{live_server.url}/system/")
    text = page.locator("main").inner_text()
    assert not re.findall(r".{0,30}\bMacs?\b.{0,30}", text), "Linux is not a Mac"
    expect(page.locator("#nodes, main").first).to_contain_text("this machine")
    services = page.locator("#services")
    expect(services).to_contain_text("no systemd user session here")
    assert "Failed to connect to bus" not in services.inner_text() and "`" not in services.inner_text()
    screenshots(page, "system-linux")
