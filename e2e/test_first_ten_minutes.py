"""A newcomer's first minutes, in a real Chromium against the app as `make run` serves it, with a
real mlx_lm.server: the new-profile form names the profile after the model, Start on the profile
page reaches `running`, the log hides the supervisor's /health probes until asked and filters by
text, a prompt longer than the model's context is refused with a message, and Ctrl-C ends it all
cleanly with exit status 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import screenshot
from e2e.conftest import register_and_create_profile, stack_model_servers
from testing.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.mlx]


def test_profile_page_start_log_toggle_and_a_prompt_too_long(stack: Stack, page: Any, tiny_model: Path) -> None:
    base = stack.url
    profile_id = register_and_create_profile(page, base, tiny_model)  # the name the form suggests

    # The profile page: the server's card with its buttons; Start reaches running in place.
    card = page.locator(f"#profile-server #server-card-{profile_id}")
    expect(card).to_have_attribute("data-state", "stopped")
    assert card.locator(".btn-restart").count() == 0  # nothing to restart while stopped
    screenshot(page, "profile-page-stopped")
    card.locator(".btn-start").click()
    expect(card, "the server did not reach running").to_have_attribute("data-state", "running", timeout=90_000)
    expect(card.locator(".btn-restart")).to_be_visible()
    assert card.locator(".btn-start").is_disabled() and card.locator(".btn-stop").is_enabled()
    screenshot(page, "profile-page-running")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    card.locator(".copy-url").click()  # one click copies the gateway's base URL, not the server's port
    assert page.evaluate("navigator.clipboard.readText()") == f"{base}/v1"

    # The server page's log: the supervisor's GET /health lines are there but hidden.
    page.goto(f"{base}/servers/{profile_id}/")
    health = page.locator("#log-lines .log-health")
    expect(health.first).to_be_attached(timeout=30_000)
    expect(health.first).to_be_hidden()
    page.check("#log-show-health")
    expect(health.first).to_be_visible()
    page.uncheck("#log-show-health")
    expect(health.first).to_be_hidden()
    page.fill("#log-filter", "Starting httpd")
    started = page.locator("#log-lines .log-line", has_text="Starting httpd")
    expect(started.first).to_be_visible()
    other = page.locator("#log-lines .log-line:not(.log-health)").filter(has_not_text="Starting httpd")
    assert other.count() > 0 and not other.first.is_visible()
    page.fill("#log-filter", "")
    expect(other.first).to_be_visible()

    # A prompt longer than the tiny model's 256-token context: refused, with the figures.
    page.fill("#id_prompt", " ".join(["hello"] * 300))
    page.click("#chat button[type=submit]")
    # The streamed chat asks /v1/, which applies the same rule and says so in an error turn.
    refusal = page.locator("#chat .chat-error")
    expect(refusal).to_contain_text("The prompt is 300 tokens; the model's context holds 256")
    expect(page.locator("#chat .chat-assistant")).to_have_count(0)
    screenshot(page, "server-page-prompt-too-long")

    # Ctrl-C: the supervisor stops the model server cleanly (honcho waits for it), exit status 0.
    status = stack.stop()
    log = stack.log_text()
    assert status == 0, log[-3000:]
    assert "supervisor stopped" in log and log.rstrip().endswith("Goodbye.")
    assert not stack_model_servers(stack)
    # The access log has the page loads but not the htmx polls (LOG_LEVEL=DEBUG would bring them back).
    assert f'"GET /servers/{profile_id}/ HTTP' in log
    assert f'"GET /servers/{profile_id}/card/' not in log and "/log/?offset=" not in log
