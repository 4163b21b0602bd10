"""The dashboard and the server page in a real Chromium, with rows in several states seeded as the
supervisor would write them and a real mlx_lm.server for the quick chat."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conftest import browser_login, screenshot, screenshots
from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.models import DesiredState, Server, ServerEvent, ServerState
from servers.tests.conftest import RealServer
from servers.tests.factories import add_samples, set_server
from testing.nodes import set_node

# What the supervisor writes (servers/supervisor/checks.py and policy.py; the supervisor's tests
# check it writes exactly these).
MISSING_MODEL = (
    "The model mlx-community/Missing-4bit is not on this machine. Download it from the Models page first; "
    "servers never download models by themselves."
)
KILLED_FROM_OUTSIDE = (
    "The process was killed by SIGKILL, which the supervisor did not send: "
    "most likely the system ran out of memory. Try a smaller model or stop another server."
)


def beat() -> None:
    set_node(heartbeat_at=timezone.now(), pid=1)


@pytest.mark.browser
@pytest.mark.mlx
@pytest.mark.django_db(transaction=True)
def test_dashboard_and_server_page_live(
    page: Any,
    live_server: Any,
    approved_user: Any,
    make_profile: Callable[..., ServerProfile],
    mlx_server: RealServer,
) -> None:
    tiny = make_profile("tiny-llama", model=str(mlx_server.model), port=mlx_server.port)
    tiny_server = set_server(
        tiny, ServerState.RUNNING, pid=mlx_server.pid, port=mlx_server.port, rss_bytes=812 * 1024**2
    )
    add_samples(tiny_server)
    ServerEvent.objects.create(server=tiny_server, kind="action", action="start", by=approved_user, cause="user")
    ServerEvent.objects.create(
        server=tiny_server, kind="transition", from_state="stopped", to_state="starting", cause="user"
    )
    ServerEvent.objects.create(
        server=tiny_server,
        kind="transition",
        from_state="starting",
        to_state="running",
        cause="health",
        message="GET /health answered 200",
    )
    broken = make_profile("broken-model", model="mlx-community/Missing-4bit")
    set_server(
        broken,
        ServerState.FATAL,
        desired_state=DesiredState.RUNNING,
        restart_count=5,
        last_error=MISSING_MODEL,
    )
    warming = make_profile("qwen3-4b", model="mlx-community/Qwen3-4B-4bit")
    set_server(warming, ServerState.STARTING, rss_bytes=None, last_health_ms=None, started_at=timezone.now())
    idle = make_profile("idle-one", model="mlx-community/Llama-3.2-1B-Instruct-4bit")
    set_server(idle, ServerState.STOPPED)
    flaky = make_profile("flaky", model="mlx-community/Phi-4-mini-4bit")
    ServerProfile.objects.filter(pk=flaky.pk).update(owner=approved_user)  # a member stops only their own
    set_server(
        flaky,
        ServerState.BACKOFF,
        desired_state=DesiredState.RUNNING,
        last_exit_code=-9,
        restart_count=2,
        last_error=KILLED_FROM_OUTSIDE,
        backoff_until=timezone.now() + timedelta(seconds=20),
    )
    beat()
    log = server_log_path(tiny.pk)
    log.write_text("".join(f"2026-11-22 03:00:{i:02d} INFO  request {i} served in 12 ms\n" for i in range(40)))

    browser_login(page, live_server.url, approved_user.email)
    page.goto(f"{live_server.url}/servers/")
    assert page.locator(".server-card").count() == 5
    assert page.locator(f"#server-card-{broken.pk} .server-failure").inner_text() == MISSING_MODEL
    assert (
        page.locator(f"#server-card-{flaky.pk} .server-failure").inner_text() == f"{KILLED_FROM_OUTSIDE} (exit code -9)"
    )
    assert page.locator(f"#server-card-{tiny.pk} .spark-mem polyline").count() == 1
    screenshot(page, "servers-dashboard-desktop")

    # The supervisor reports a change: the card follows without a reload.
    page.evaluate("window.__noReload = true")
    set_server(idle, ServerState.RUNNING)
    page.wait_for_selector(f"#server-card-{idle.pk}[data-state='running']", timeout=30_000)
    assert page.evaluate("window.__noReload") is True

    # A figure alone changed: the poll sends that figure only, so the card stays the same element
    # (whatever the person was doing with it is left alone); the memory bar is sized again.
    page.evaluate(f"document.getElementById('server-card-{broken.pk}').dataset.kept = 'yes'")
    Server.objects.filter(profile=broken).update(restart_count=6)
    expect(page.locator(f"#server-card-{broken.pk}-restarts")).to_have_text("6", timeout=30_000)
    assert page.evaluate(f"document.getElementById('server-card-{broken.pk}').dataset.kept") == "yes"
    expect(page.locator("#memory-summary .membar .mem-other")).to_have_attribute("style", re.compile(r"width: [\d.]+%"))
    # A new card changes the frame: the whole live part comes, still without a reload, morphed in
    # (the button someone tabbed to keeps the focus).
    page.focus(f"#server-card-{broken.pk} .btn-start")
    added = make_profile("added-later", model="mlx-community/Added-4bit")
    page.wait_for_selector(f"#server-card-{added.pk}", timeout=30_000)
    assert page.locator(".server-card").count() == 6 and page.evaluate("window.__noReload") is True
    assert page.evaluate(f"document.activeElement.matches('#server-card-{broken.pk} .btn-start')"), "focus lost"
    expect(page.locator("#memory-summary .membar .mem-other")).to_have_attribute("style", re.compile(r"width: [\d.]+%"))
    screenshots(page, "servers-dashboard-after-polls")

    # A button answers at once with the card; a fatal server can be started again.
    page.click(f"#server-card-{broken.pk} .btn-start")
    page.wait_for_selector(f"#server-card-{broken.pk} .server-pending:has-text('Restart requested')", timeout=30_000)
    assert Server.objects.get(profile=broken).restart_requested == 1
    # Each button posts to its own action (formaction), through htmx too.
    page.click(f"#server-card-{flaky.pk} .btn-stop")
    page.wait_for_selector(f"#server-card-{flaky.pk} .server-pending:has-text('Stop requested')", timeout=30_000)
    assert Server.objects.get(profile=flaky).desired_state == DesiredState.STOPPED
    assert page.evaluate("window.__noReload") is True

    # The supervisor stops beating: the banner appears, still without a reload.
    set_node(heartbeat_at=timezone.now() - timedelta(minutes=2))
    page.wait_for_selector("#supervisor-banner", timeout=30_000)
    assert "python manage.py runsupervisor" in page.locator("#supervisor-banner").inner_text()
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "servers-dashboard-supervisor-down")

    beat()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/servers/")
    screenshot(page, "servers-dashboard-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the dashboard scrolls sideways on a phone ({width}px)"

    # The server page: state, timeline, log following live, the quick chat against the real server.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/servers/{tiny.pk}/")
    assert "request 39 served" in page.locator("#log-lines").inner_text()
    assert page.locator("#server-events tbody tr").count() == 3
    with log.open("a") as handle:
        handle.write("".join(f"2026-11-22 03:01:00 INFO  burst line {i}\n" for i in range(2000)))
    # A locator, not wait_for_function: the Content-Security-Policy forbids evaluating strings.
    expect(page.locator("#log-lines")).to_contain_text("burst line 1999", timeout=30_000)
    page.fill("#id_prompt", "hello model")
    page.click("#chat button[type=submit]")
    # The streamed chat through /v1/: an assistant turn that finished, then time to first token and speed.
    page.wait_for_selector("#chat .chat-assistant:not(.chat-streaming)", timeout=60_000)
    assert page.locator("#chat .chat-error").count() == 0, page.locator("#chat .chat-error").all_inner_texts()
    assert page.locator("#chat .chat-assistant").inner_text().strip()
    assert "tokens/s" in page.locator("#chat .chat-stats").inner_text()
    beat()
    screenshot(page, "servers-page-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "servers-page-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the server page scrolls sideways on a phone ({width}px)"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_poll_keeps_the_focus_and_a_selection_on_the_server_and_profile_pages(
    page: Any, live_server: Any, approved_user: Any, make_profile: Callable[..., ServerProfile]
) -> None:
    """The server page and the profile page poll their server's part every second while it starts:
    the answer is morphed into the page, so the button someone tabbed to keeps the focus and the
    command they are selecting stays selected, while the figures change under them."""
    profile = make_profile("warming", model="mlx-community/Qwen3-4B-4bit")
    ServerProfile.objects.filter(pk=profile.pk).update(owner=approved_user)  # Stop is offered to its owner
    set_server(profile, ServerState.STARTING, pid=4242, started_at=timezone.now(), restart_count=0)
    beat()
    browser_login(page, live_server.url, approved_user.email)
    card = f"#server-card-{profile.pk}"

    page.goto(f"{live_server.url}/servers/{profile.pk}/")
    page.evaluate("document.getElementById('server-state').kept = true")
    page.focus(f"{card} .btn-stop")
    page.evaluate(
        "const range = document.createRange();"
        " range.selectNodeContents(document.querySelector('.server-command'));"
        " getSelection().removeAllRanges(); getSelection().addRange(range);"
    )
    selected = page.evaluate("getSelection().toString()")
    assert "mlx_lm" in selected or "mlx-community/Qwen3-4B-4bit" in selected
    page.evaluate(  # counts the polls' answers as they land in the page
        "window.settled = 0; document.body.addEventListener('htmx:afterSettle', () => { window.settled += 1; })"
    )
    Server.objects.filter(profile=profile).update(restart_count=3)
    expect(page.locator(f"{card}-restarts")).to_have_text("3", timeout=15_000)  # a poll came in
    landed = page.evaluate("window.settled")
    deadline = time.monotonic() + 15
    while page.evaluate("window.settled") <= landed:  # and one more after it, morphed in as well
        assert time.monotonic() < deadline, "no poll landed after the one that showed 3 restarts"
        page.wait_for_timeout(100)
    assert page.evaluate("document.getElementById('server-state').kept") is True
    assert page.evaluate("document.activeElement.matches('.btn-stop')"), "the poll took the focus away"
    assert page.evaluate("getSelection().toString()") == selected, "the poll dropped the selection"

    page.goto(f"{live_server.url}/profiles/{profile.pk}/")
    page.focus(f"{card} .btn-stop")
    Server.objects.filter(profile=profile).update(restart_count=4)
    expect(page.locator(f"{card}-restarts")).to_have_text("4", timeout=15_000)
    assert page.evaluate("document.activeElement.matches('.btn-stop')"), "the card's poll took the focus away"
