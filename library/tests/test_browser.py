"""A real Chromium: search the Hub stand-in, download with the progress bar moving to done, see
the model in the local list, delete it. The DownloadRunner is ticked by a thread, as the
supervisor's loop does."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from conftest import browser_login, screenshot
from library.downloads import DownloadRunner
from library.local import cached_repo_ids
from library.models import Download, DownloadState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MEDIUM = "mlx-community/Medium-Model-8bit"


@pytest.fixture
def supervisor_loop() -> Iterator[DownloadRunner]:
    runner = DownloadRunner()
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                runner.tick()
                time.sleep(0.3)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield runner
    stop.set()
    thread.join(10)
    runner.shutdown()


def test_search_download_watch_progress_then_delete(
    page: Any, live_server: Any, approved_user: User, hub: Any, supervisor_loop: DownloadRunner
) -> None:
    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/models/search/")
    page.fill("input[name=q]", "medium")  # results arrive as you type (htmx, debounced)
    row = page.locator(f'tr[data-repo="{MEDIUM}"]')
    row.wait_for()
    assert page.locator("tr[data-repo]").count() == 1
    assert "6.3 MB" in row.inner_text().replace("\xa0", " ")
    screenshot(page, "library-search")

    hub.bytes_per_second = 1_000_000  # about six seconds for 6 MiB: long enough to watch
    row.locator("button", has_text="Download").click()
    page.locator(f'[data-queued="{MEDIUM}"]').click()
    page.wait_for_url("**/models/**")

    seen: set[int] = set()
    deadline = time.monotonic() + 60
    screenshot_taken = False
    focused_at: int | None = None  # the progress when Cancel got the focus
    focus_kept = False
    while time.monotonic() < deadline:
        text = page.locator("#downloads").inner_text(timeout=5000)
        if match := re.search(r"(\d+)%", text):
            seen.add(int(match[1]))
            if focused_at is None and int(match[1]) < 50:
                # The section polls every second and is morphed into the page: a button someone
                # tabbed to keeps the focus while the progress moves.
                page.evaluate("document.getElementById('downloads').kept = true")
                page.focus("#downloads .download button")
                focused_at = int(match[1])
            elif focused_at is not None and focused_at < int(match[1]) < 100 and not focus_kept:
                assert page.evaluate("document.getElementById('downloads').kept") is True
                assert page.evaluate("document.activeElement.textContent.trim()") == "Cancel"
                focus_kept = True
            if 20 < int(match[1]) < 90 and not screenshot_taken:
                assert "left" in text and "/s" in text  # speed and time left
                screenshot(page, "library-download-progress")
                screenshot_taken = True
        if page.locator(f'tr[data-model="{MEDIUM}"]').count():
            break
        time.sleep(0.25)
    in_between = sorted(p for p in seen if 0 < p < 100)
    assert len(in_between) >= 2, f"the progress bar never moved: {sorted(seen)}"
    assert focus_kept, f"the focus was not checked while the download ran: {sorted(seen)}"
    model_row = page.locator(f'tr[data-model="{MEDIUM}"]')
    model_row.wait_for()  # the page reloaded itself when the download ended
    assert "completed" in page.locator(".recent-downloads").inner_text()
    assert MEDIUM in cached_repo_ids()
    screenshot(page, "library-local-after-download")

    page.on("dialog", lambda dialog: dialog.accept())
    model_row.locator("button", has_text="Delete").click()
    page.locator(".message-success").wait_for()
    assert "Deleted mlx-community/Medium-Model-8bit" in page.locator(".messages").inner_text()
    assert page.locator(f'tr[data-model="{MEDIUM}"]').count() == 0
    assert MEDIUM not in cached_repo_ids()
    screenshot(page, "library-local-after-delete")

    page.goto(f"{live_server.url}/models/hub/mlx-community/Tiny-Llama-4bit/")
    assert "A tiny llama model for tests" in page.locator(".model-card").inner_text()
    screenshot(page, "library-hub-model")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/models/search/?q=qwen&author=any")
    page.locator("tr[data-repo]").first.wait_for()
    screenshot(page, "library-search-phone")


def test_hub_down_shows_a_message_in_the_browser(
    page: Any, live_server: Any, approved_user: User, hub: Any, settings: Any
) -> None:
    settings.MLXM_HUB_TIMEOUT = 2.0
    hub.down = True  # answers 500: the client retries until the page's deadline
    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/models/search/")
    busy = page.locator("#search-busy")
    assert not busy.is_visible()
    page.fill("input[name=q]", "qwen")
    busy.wait_for(state="visible")  # while the search runs
    assert "Searching the Hub" in busy.inner_text()
    screenshot(page, "library-search-busy")
    message = page.locator(".hub-error")
    message.wait_for()
    assert "did not answer in time" in message.inner_text()
    busy.wait_for(state="hidden")
    screenshot(page, "library-search-hub-down")


def test_a_refused_download_shows_its_reason_in_place(
    page: Any, live_server: Any, approved_user: User, hub: Any
) -> None:
    """The download view answers a refusal with 400 and a fragment; htmx must show it, not drop it."""
    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/models/search/?q=medium")
    form = page.locator("tr", has_text=MEDIUM).locator("form")
    form.locator("input[name=repo_id]").evaluate("input => input.value = '../../etc'")
    form.locator("button[type=submit]").click()
    refusal = page.locator(".field-error")
    refusal.wait_for()
    assert "is not a Hugging Face repo id" in refusal.inner_text()


def test_a_focused_cancel_stays_with_its_download_when_another_ends(
    page: Any, live_server: Any, approved_user: User
) -> None:
    """The downloads list is morphed into the page at each poll: rows are matched by id, so when
    the first download ends and the list moves up, the Cancel someone tabbed to still cancels the
    download it was next to, not the one that slid into its place."""
    first, second, _third = (
        Download.objects.create(
            repo_id=f"mlx-community/Model-{n}-4bit",
            requested_by=approved_user,
            state=DownloadState.DOWNLOADING,
            bytes_done=n * 1000,
            bytes_total=10_000,
        )
        for n in (1, 2, 3)
    )
    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/models/")
    page.focus(f'article[data-download="{second.pk}"] button')
    Download.objects.filter(pk=first.pk).update(state=DownloadState.COMPLETED, finished_at=timezone.now())
    page.locator(f'.recent-downloads [data-download="{first.pk}"]').wait_for(timeout=15_000)
    assert page.locator("#downloads .download").count() == 2
    cancels = page.evaluate("document.activeElement.closest('form').getAttribute('hx-post')")
    assert cancels == reverse("library:cancel", args=[second.pk]), f"the focused Cancel now posts to {cancels}"
