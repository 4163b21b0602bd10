"""Pages and the API show people the gateway's address, never a model server's own port: that
port answers without a key, records no usage and loads whatever `model` names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshots
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.models import ServerState
from servers.tests.factories import set_server

pytestmark = pytest.mark.browser
PORT = 18_765


def test_cards_profile_page_and_api_give_the_gateway_not_the_port(
    live_server: Any, page: Any, transactional_db: Any, make_user: Callable[..., User]
) -> None:
    base = live_server.url
    owner = make_user("owner@example.com", admin=True)
    profile = ServerProfile.objects.create(name="qwen", model="mlx-community/Tiny-4bit", port=PORT)
    set_server(profile, ServerState.RUNNING, port=PORT)
    browser_login(page, base, owner.email)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)

    for path in ("/servers/", f"/servers/{profile.pk}/", f"/profiles/{profile.pk}/", "/profiles/"):
        page.goto(base + path)
        text = page.locator("main").inner_text() + page.content()
        assert f":{PORT}" not in text, f"{path} shows the model server's address"
        copy = page.locator(f"#server-card-{profile.pk} .copy-url")
        if copy.count():
            expect(copy).to_have_attribute("data-copy", f"{base}/v1")
            copy.click()
            assert page.evaluate("navigator.clipboard.readText()") == f"{base}/v1"
    page.goto(f"{base}/servers/{profile.pk}/")
    expect(page.locator("#server-facts")).to_contain_text(f"{base}/v1")
    screenshots(page, "server-page-gateway-url")

    secret = key_create(user=owner, name="script").secret
    (server,) = httpx.get(f"{base}/api/v1/servers/", headers={"Authorization": f"Bearer {secret}"}).json()
    assert server["base_url"] == f"{base}/v1" and server["port"] == PORT  # the port stays, as a fact
