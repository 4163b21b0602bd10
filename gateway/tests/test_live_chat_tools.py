"""The quick chat shows a tool call (name and arguments) when the model makes one: streamed through
`/v1/` in a real Chromium, and in the server-side answer without JavaScript. The scripted model
(testing/scriptedmodel.py) calls its tool unprompted, as real models sometimes do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshots
from gateway.tests.conftest import start_profile
from profiles.models import ServerProfile
from testing.scriptedmodel import ToolCall
from testing.web import WebServer

pytestmark = pytest.mark.mlx
CALL = ToolCall("get_weather", {"city": "Paris <b>"})  # markup in arguments must stay text


@pytest.fixture
def calling(
    supervisor_process: Any, scripted_model: Callable[..., Path], make_user: Callable[..., User]
) -> Iterator[tuple[ServerProfile, User]]:
    supervisor_process.start()
    profile = start_profile(scripted_model(CALL, unprompted=True), "caller", supervisor_process)
    yield profile, make_user("member@example.com")


def test_the_server_side_chat_shows_the_tool_call(calling: tuple[ServerProfile, User]) -> None:
    profile, user = calling
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    html = client.post(f"/servers/{profile.pk}/chat/", {"prompt": "Weather?"}, headers={"HX-Request": "true"})
    text = html.content.decode()
    assert '<code class="chat-tool-name">get_weather</code>' in text
    assert json.dumps(CALL.arguments).replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") in text
    assert "called a tool instead of writing text" in text


@pytest.mark.browser
def test_the_streamed_chat_shows_the_tool_call(calling: tuple[ServerProfile, User], page: Any, tmp_path: Path) -> None:
    profile, user = calling
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        browser_login(page, web.url, user.email)
        page.goto(f"{web.url}/servers/{profile.pk}/")
        page.fill("#id_prompt", "What is the weather in Paris?")
        page.click("form.chat-form button[type=submit]")
        call = page.locator("#chat-log .chat-tool-call")
        expect(call).to_have_count(1, timeout=60_000)
        expect(call.locator(".chat-tool-name")).to_have_text("get_weather")
        assert json.loads(call.locator(".chat-tool-arguments").inner_text()) == CALL.arguments
        expect(page.locator(".chat-assistant")).to_have_text("(no text: the model called a tool)")
        screenshots(page, "gateway-server-chat-tool-call")
    finally:
        web.stop()
