"""In a real Chromium against gunicorn and a real `mlx_lm.server`: the quick chat streams through
`/v1/` with the session (no key), keeps two turns and clears; the keys page shows a new secret once.
Screenshots of the pages this app changed (1280 and 390 px, light and dark) go to test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import browser_login, hidden_sideways, screenshots
from gateway.models import UsageRecord
from gateway.tests.conftest import Live
from testing.supervisor import wait_for

pytestmark = [pytest.mark.mlx, pytest.mark.browser]


def shots(page: Any, name: str) -> None:
    screenshots(page, f"gateway-{name}")


def test_quick_chat_streams_two_turns_through_v1(live: Live, page: Any) -> None:
    browser_login(page, live.web.url, live.user.email)
    page.goto(f"{live.web.url}/servers/{live.profile.pk}/")
    page.fill("#id_prompt", "Hello there")
    page.click("form.chat-form button[type=submit]")
    page.wait_for_selector(".chat-ttft")
    first = page.inner_text(".chat-assistant >> nth=0")
    assert first.strip()
    assert "tokens/s" in page.inner_text(".chat-speed")
    page.fill("#id_prompt", "And again")
    page.click("form.chat-form button[type=submit]")
    expect(page.locator(".chat-assistant:not(.chat-streaming)")).to_have_count(2, timeout=60_000)
    assert page.locator(".chat-user").count() == 2
    assert "2 turn(s)" in page.inner_text("#chat-stats")
    # recorded like any other request, as the signed-in person without a key
    wait_for(
        lambda: UsageRecord.objects.filter(user=live.user, api_key=None, status=200).count() == 2,
        timeout=20,
        what="2 records",
    )
    # the second request carried the first turn: its prompt is longer
    first_prompt, second_prompt = (
        UsageRecord.objects.filter(user=live.user).order_by("created_at").values_list("prompt_tokens", flat=True)
    )
    assert first_prompt is not None and second_prompt is not None
    assert second_prompt > first_prompt
    shots(page, "server-chat")
    page.click("#chat-clear")
    assert page.locator(".chat-turn").count() == 0

    page.goto(f"{live.web.url}/servers/")
    page.click(".use-it summary")
    expect(page.locator(".use-it pre").first).to_contain_text(f'base_url="{live.web.url}/v1"')
    # A dashboard poll (which replaces a card whose shape changed): the open panel stays open, its snippets stay.
    with page.expect_response(
        lambda r: r.url.split("?")[0].endswith("/servers/") and r.request.headers.get("hx-request") == "true"
    ):
        pass
    page.wait_for_timeout(300)  # the swap settles after the response
    expect(page.locator(".use-it")).to_have_attribute("open", "")
    expect(page.locator(".use-it pre")).to_have_count(3)
    shots(page, "dashboard")

    page.goto(f"{live.web.url}/accounts/keys/")
    page.fill("input[name=name]", "claude_code_on_the_build_machine")  # one long word, as scripts name keys
    page.click("form[action$='/keys/new/'] button[type=submit]")
    secret = page.inner_text("#new-api-key")
    assert secret.startswith("mlxm_")
    shots(page, "keys")
    page.set_viewport_size({"width": 390, "height": 844})
    hidden = hidden_sideways(page, ".keys-table")
    assert hidden <= 0, f"the keys table is {hidden}px wider than a phone's screen"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()
    assert page.locator("#new-api-key").count() == 0

    page.goto(f"{live.web.url}/usage/")
    assert page.inner_text("#usage-requests") == "2"
    shots(page, "usage")
    page.set_viewport_size({"width": 390, "height": 844})
    for table in (".usage-table", "#usage-recent"):  # the first summary table, the latest requests
        hidden = hidden_sideways(page, table)
        assert hidden <= 0, f"{table} is {hidden}px wider than a phone's screen"
