"""The docs page in real Chromium: Swagger UI from this app's static files (no network here, so a
CDN could not load), every operation listed, no console error or Content-Security-Policy report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshot, screenshots


def test_the_docs_page_lists_the_operations_offline(
    live_server: Any, page: Any, transactional_db: Any, make_user: Callable[..., User]
) -> None:
    browser_login(page, live_server.url, make_user("reader@example.com").email)
    # A blank page first: the page the login landed on (its poll, its favicon) ends its loads before
    # anything is listened to, so every load counted below is the docs page's own.
    page.goto("about:blank")
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
    page.on(
        "response",
        lambda response: problems.append(f"{response.status}: {response.url}") if response.status >= 400 else None,
    )
    page.goto(f"{live_server.url}/api/v1/docs")
    # Swagger UI renders after fetching the schema; a loaded 2-core machine can take a while.
    expect(page.locator(".swagger-ui .title")).to_contain_text("MLX Manager API", timeout=60_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/servers/{profile_id}/start")).to_be_visible()
    assert page.locator(".opblock").count() >= 35
    screenshot(page, "api-docs")
    assert not problems, problems

    # Dark when the system is, and a way back to the app.
    swagger_filter = "getComputedStyle(document.querySelector('.swagger-ui')).filter"
    background = "getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(swagger_filter) == "none" and page.evaluate(background) == "rgb(255, 255, 255)"
    page.emulate_media(color_scheme="dark")
    assert "invert" in page.evaluate(swagger_filter) and page.evaluate(background) == "rgb(19, 23, 31)"
    screenshots(page, "api-docs")
    page.click("#docs-back")
    page.wait_for_url(f"{live_server.url}/servers/")
