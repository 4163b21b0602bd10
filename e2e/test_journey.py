"""The whole journey in a real Chromium against the app as `make run` serves it (gunicorn and a real
`runsupervisor` under honcho): the first account becomes the admin, a colleague registers and is
approved, downloads the tiny model from the hub stand-in (watching the progress bar move), makes a
profile of it, starts it, chats with it, reads its log and stops it; the admin disables them and
their next click lands on the login page. Stopping the stack leaves no model server behind."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from accounts.tests.test_browser import _register as register
from conftest import browser_login, screenshot
from e2e.conftest import stack_model_servers
from testing.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.mlx]

TINY = "mlx-community/Tiny-Llama-4bit"
ADMIN = "owner@example.com"
COLLEAGUE = "sam@example.com"
# Waits are generous (a loaded 2-core machine) and each names what it waited for.
START_TIMEOUT = 90_000  # ms: the supervisor spawns mlx_lm.server, which answers /health
DOWNLOAD_TIMEOUT = 60.0  # s


def shot(page: Any, step: int, name: str) -> None:
    screenshot(page, f"journey-{step:02d}-{name}")


READ_PROGRESS = """(repo) => ({
  pct: document.querySelector('#downloads .pct')?.innerText ?? '',
  listed: document.querySelector(`tr[data-model="${repo}"]`) !== null,
})"""


def watch_download(page: Any) -> list[int]:
    """Read the progress percentage on /models/ until the model is listed (the page reloads itself
    when the download ends); return every value seen, in order."""
    seen: list[int] = []
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    screenshot_taken = False
    while True:
        assert time.monotonic() < deadline, f"the download did not finish in {DOWNLOAD_TIMEOUT:g} s; seen {seen}"
        try:
            state = page.evaluate(READ_PROGRESS, TINY)  # one read of the live page
        except PlaywrightError:  # the page is reloading itself
            state = {"pct": "", "listed": False}
        if state["listed"]:
            return seen
        if match := re.fullmatch(r"(\d+)%", state["pct"].strip()):
            value = int(match[1])
            if not seen or seen[-1] != value:
                seen.append(value)
            if 0 < value < 100 and not screenshot_taken:
                shot(page, 6, "download-progress")
                screenshot_taken = True
        page.wait_for_timeout(100)  # how often the bar is read, not a synchronisation


def test_journey(stack: Stack, hub: Any, page: Any, second_page: Any) -> None:
    began = time.monotonic()
    base = stack.url
    admin, sam = page, second_page

    # 1. The first account becomes the administrator.
    register(admin, base, ADMIN)
    admin.wait_for_url("**/servers/")
    expect(admin.locator(".messages")).to_contain_text("administrator")
    expect(admin.locator("nav a", has_text="Users")).to_be_visible()
    shot(admin, 1, "first-account-is-admin")

    # 2. A colleague registers and waits.
    register(sam, base, COLLEAGUE)
    sam.wait_for_url("**/accounts/pending/")
    expect(sam.locator("main")).to_contain_text("awaiting approval")
    shot(sam, 2, "colleague-pending")

    # 3. The admin approves them on /users/.
    admin.click("nav a:has-text('Users')")
    admin.wait_for_url("**/users/**")
    row = admin.locator("tr", has_text=COLLEAGUE)
    expect(row.locator(".badge")).to_have_text("Pending")
    shot(admin, 3, "users-pending")
    row.locator("button", has_text="Approve").click()
    expect(row.locator(".badge-ok")).to_have_text("Approved")
    shot(admin, 4, "users-approved")

    # 4. The colleague logs in and searches the Hub (the stand-in).
    browser_login(sam, base, COLLEAGUE)
    sam.wait_for_url("**/servers/")
    sam.click("nav a:has-text('Models')")
    sam.wait_for_url("**/models/")
    sam.locator("a", has_text="Search the Hub").click()
    sam.fill("input[name=q]", "tiny")  # results arrive as you type
    result = sam.locator(f'tr[data-repo="{TINY}"]')
    expect(result).to_be_visible()
    shot(sam, 5, "search")

    # 5. Download, served slowly enough to watch the bar move.
    total = sum(f.size for f in hub.repos[TINY].files.values())
    hub.bytes_per_second = total / 6  # about six seconds
    result.locator("button", has_text="Download").click()
    sam.locator(f'[data-queued="{TINY}"]').click()
    sam.wait_for_url("**/models/**")
    seen = watch_download(sam)
    in_between = [p for p in seen if 0 < p < 100]
    assert in_between, f"the progress bar never showed a percentage between 0 and 100: {seen}"
    assert seen == sorted(seen), f"the progress went backwards: {seen}"
    expect(sam.locator(".recent-downloads")).to_contain_text("completed")
    shot(sam, 7, "downloaded")

    # 6. A profile from the model page.
    sam.locator(f'tr[data-model="{TINY}"] a', has_text=TINY).click()
    sam.wait_for_url(f"**/models/hub/{TINY}/")
    shot(sam, 8, "model-page")
    sam.set_viewport_size({"width": 390, "height": 844})
    shot(sam, 8, "model-page-phone")
    width = sam.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the model page scrolls sideways on a phone ({width}px)"
    sam.set_viewport_size({"width": 1280, "height": 900})
    sam.locator("a", has_text="Create a profile with this model").click()
    sam.wait_for_url("**/profiles/new/**")
    expect(sam.locator("input[name=model]")).to_have_value(TINY)
    expect(sam.locator("#model-check")).to_contain_text("llama")
    sam.fill("input[name=name]", "tiny-chat")
    shot(sam, 9, "new-profile")
    sam.get_by_role("button", name="Create profile").click()
    expect(sam.locator(".message")).to_contain_text("created")
    profile_url = sam.url
    profile_id = int(re.search(r"/profiles/(\d+)/", profile_url)[1])  # type: ignore[index]
    shot(sam, 10, "profile-created")

    # 7. Start it on the dashboard and see it running, without reloading.
    sam.click("nav a:has-text('Servers')")
    sam.wait_for_url("**/servers/")
    card = sam.locator(f"#server-card-{profile_id}")
    expect(card).to_have_attribute("data-state", "stopped")
    sam.evaluate("window.__noReload = true")
    card.locator(".btn-start").click()
    expect(card, "the server did not reach running").to_have_attribute("data-state", "running", timeout=START_TIMEOUT)
    assert sam.evaluate("window.__noReload") is True, "the dashboard reloaded instead of updating in place"
    pid = int(card.locator(".server-pid").inner_text())
    assert any(p.pid == pid for p in stack_model_servers(stack)), f"PID {pid} on the card is no mlx_lm.server"
    shot(sam, 11, "dashboard-running")

    # 8. Chat with it on the server page.
    card.locator(".server-details-link").click()
    sam.wait_for_url(f"**/servers/{profile_id}/")
    sam.fill("#id_prompt", "hello model")
    sam.click("#chat button[type=submit]")
    # The answer streams in through /v1/; when it is whole, the stats say how fast it came.
    expect(sam.locator("#chat .chat-assistant:not(.chat-streaming)")).to_be_visible(timeout=60_000)
    assert sam.locator("#chat .chat-assistant").inner_text().strip()
    assert sam.locator("#chat .chat-error").count() == 0
    stats = sam.locator("#chat .chat-stats").inner_text()
    assert "First token after" in stats and "tokens/s" in stats, stats
    shot(sam, 12, "chat")

    # 9. Its log, following live: the chat request shows up without a reload.
    expect(sam.locator("#log-lines")).to_contain_text("/v1/chat/completions", timeout=20_000)
    sam.locator("#log").scroll_into_view_if_needed()
    shot(sam, 13, "log")

    # 10. Back on the dashboard the supervisor's samples show its memory; stop it and see it stopped.
    sam.click("nav a:has-text('Servers')")
    sam.wait_for_url("**/servers/")
    expect(card.locator(".server-rss"), "no memory sample for the running server").to_contain_text(
        re.compile(r"\d"), timeout=30_000
    )
    # A sparkline needs three sampled minutes; until then the card says so instead of drawing a dot.
    expect(card.locator(".server-nosamples")).to_contain_text("appear after a few minutes")
    shot(sam, 14, "dashboard-running-with-samples")
    card.locator(".btn-stop").click()
    expect(card, "the server did not stop").to_have_attribute("data-state", "stopped", timeout=60_000)
    expect(card.locator(".server-pid")).not_to_have_text(str(pid))
    shot(sam, 15, "dashboard-stopped")

    # 11. The admin disables the colleague; their next click lands on the login page.
    admin.goto(f"{base}/users/")
    row = admin.locator("tr", has_text=COLLEAGUE)
    row.locator("button", has_text="Disable").click()
    expect(row.locator(".badge-bad")).to_have_text("Disabled")
    shot(admin, 16, "users-disabled")
    sam.click("nav a:has-text('Models')")
    sam.wait_for_url("**/accounts/login/**")
    expect(sam.locator("input[name=username]")).to_be_visible()
    expect(sam.locator(".messages")).to_contain_text("Your account is disabled")
    shot(sam, 17, "disabled-lands-on-login")
    journey_seconds = time.monotonic() - began

    # 12. Ctrl-C on the stack: no model server of it is left.
    stack.stop()
    leftovers = stack_model_servers(stack)
    assert not leftovers, f"mlx_lm.server processes left after the stack stopped: {[p.pid for p in leftovers]}"
    print(f"journey took {journey_seconds:.1f} s; progress seen: {seen}")
