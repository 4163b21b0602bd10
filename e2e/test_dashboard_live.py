"""The servers dashboard live, in a real Chromium against the app as `make run` serves it (issue 5's
browser test): a profile made through the form on the tiny model's folder, Start on the dashboard,
`running` without a reload, a quick chat answered by the real mlx_lm.server, Stop, `stopped`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import screenshot
from e2e.conftest import register_and_create_profile, stack_model_servers
from testing.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.mlx]


def test_start_chat_stop_from_the_dashboard(stack: Stack, page: Any, tiny_model: Path) -> None:
    base = stack.url
    # A profile through the form, on the model folder's absolute path.
    profile_id = register_and_create_profile(page, base, tiny_model, name="tiny-folder")

    # Start on the dashboard; the card turns running by itself (htmx polling), no reload.
    page.click("nav a:has-text('Servers')")
    page.wait_for_url("**/servers/")
    card = page.locator(f"#server-card-{profile_id}")
    expect(card).to_have_attribute("data-state", "stopped")
    page.evaluate("window.__noReload = true")
    clicked = time.monotonic()
    card.locator(".btn-start").click()
    expect(card, "the server did not reach running").to_have_attribute("data-state", "running", timeout=60_000)
    seconds_to_running = time.monotonic() - clicked
    assert page.evaluate("window.__noReload") is True, "the dashboard reloaded instead of updating in place"
    assert card.locator(".btn-start").is_disabled() and card.locator(".btn-stop").is_enabled()
    pid = int(card.locator(".server-pid").inner_text())
    assert [p.pid for p in stack_model_servers(stack)] == [pid], "the card's PID is not the one model server"
    screenshot(page, "dashboard-live-running")

    # The server page: quick chat against the real server.
    card.locator(".server-details-link").click()
    page.wait_for_url(f"**/servers/{profile_id}/")
    expect(page.locator("#server-facts")).to_contain_text(f"PID {pid}")
    page.fill("#id_prompt", "hello model")
    page.click("#chat button[type=submit]")
    # The streamed chat through /v1/: an assistant turn that finished, then time to first token and speed.
    expect(page.locator("#chat .chat-assistant:not(.chat-streaming)")).to_be_visible(timeout=60_000)
    expect(page.locator("#chat .chat-stats")).to_contain_text("tokens/s")
    expect(page.locator("#chat .chat-error")).to_have_count(0)
    screenshot(page, "dashboard-live-server-page")

    # Stop from the server page's card; it turns stopped, still without a reload.
    page.evaluate("window.__noReload = true")
    page.locator(f"#server-card-{profile_id} .btn-stop").click()
    expect(page.locator(f"#server-card-{profile_id}"), "the server did not stop").to_have_attribute(
        "data-state", "stopped", timeout=60_000
    )
    assert page.evaluate("window.__noReload") is True
    assert not stack_model_servers(stack), "the model server is still alive after `stopped` was shown"
    page.click("nav a:has-text('Servers')")
    expect(page.locator(f"#server-card-{profile_id}")).to_have_attribute("data-state", "stopped")
    screenshot(page, "dashboard-live-stopped")
    print(f"running {seconds_to_running:.1f} s after Start")
