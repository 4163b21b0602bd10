"""The docs page in real Chromium: Swagger UI from this app's static files (no network here, so a
CDN could not load), every operation listed, no console error or Content-Security-Policy report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshot


def test_the_docs_page_lists_the_operations_offline(
    live_server: Any, page: Any, transactional_db: Any, make_user: Callable[..., User]
) -> None:
    browser_login(page, live_server.url, make_user("reader@example.com").email)
    # Listening from here: leaving the page the login landed on may abort its own loads.
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    # The dashboard's own poll, cut short by leaving that page, is not the docs page's failure.
    page.on(
        "requestfailed",
        lambda request: problems.append(f"failed: {request.url}") if "/servers/" not in request.url else None,
    )
    page.goto(f"{live_server.url}/api/v1/docs")
    # Swagger UI renders after fetching the schema; a loaded 2-core machine can take a while.
    expect(page.locator(".swagger-ui .title")).to_contain_text("MLX Manager API", timeout=60_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/servers/{profile_id}/start")).to_be_visible()
    assert page.locator(".opblock").count() >= 35
    screenshot(page, "api-docs")
    assert not problems, problems
