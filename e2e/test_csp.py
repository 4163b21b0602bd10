"""The Content-Security-Policy in a real Chromium: every page, as an administrator and as a member,
reports no violation, and what used to be inline (memory bars, confirmations, polls) still works."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from conftest import browser_login, screenshot
from library.models import Download
from profiles.models import ServerProfile
from servers.models import ServerState
from servers.tests.factories import set_server

pytestmark = pytest.mark.browser

# Injected by the browser itself (not a page script), so the policy does not block it.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile + ":" + e.lineNumber);
});
"""


def _pages(profile: ServerProfile, *, admin: bool) -> list[str]:
    pages = [
        "/servers/",
        f"/servers/{profile.pk}/",
        "/profiles/",
        "/profiles/new/",
        f"/profiles/{profile.pk}/",
        f"/profiles/{profile.pk + 1}/",  # a stopped one: its Delete asks first
        "/models/",
        "/models/search/?q=tiny",
        "/system/",
        "/accounts/",
        "/accounts/keys/",  # the gateway's pages (API keys, usage)
        "/usage/",
    ]
    if admin:
        pages += [f"/profiles/{profile.pk}/edit/", "/users/", "/admin/", "/admin/accounts/user/"]
    return pages


def _walk(page: Any, base: str, urls: list[str], who: str) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
            else None
        ),
    )
    for url in urls:
        response = page.goto(f"{base}{url}")
        assert response is not None and response.status == 200, url
        assert "script-src 'self'" in response.headers.get("content-security-policy", ""), url
        page.wait_for_load_state("networkidle")
        problems += [f"{url}: {v}" for v in page.evaluate("window.__cspViolations")]
        if url in ("/servers/", "/system/"):
            page.wait_for_timeout(1500)  # let a poll swap in fresh content (htmx) at least once
            problems += [f"{url} after a poll: {v}" for v in page.evaluate("window.__cspViolations")]
            screenshot(page, f"csp-{who}-{url.strip('/').replace('/', '-') or 'home'}")
    return problems


def test_every_page_has_no_csp_violation(
    browser_instance: Any, live_server: Any, make_user: Any, hub: Any, request: pytest.FixtureRequest
) -> None:
    from conftest import browser_page

    admin = make_user("boss@example.com", admin=True)
    member = make_user("member@example.com")
    profile = ServerProfile.objects.create(name="tiny", model="mlx-community/Tiny-Llama-4bit", port=9811, owner=admin)
    set_server(profile, ServerState.STARTING)  # a busy server: the pages poll every second
    ServerProfile.objects.create(name="idle", model="mlx-community/Tiny-Llama-4bit", port=9812, owner=member)
    Download.objects.create(repo_id="mlx-community/Medium-Model-8bit", requested_by=member)
    for user, is_admin in ((admin, True), (member, False)):
        with browser_page(browser_instance, request, who=f"-{user.email}") as page:
            page.context.add_init_script(RECORD_VIOLATIONS)
            browser_login(page, live_server.url, user.email)
            page.wait_for_url("**/servers/")
            problems = _walk(page, live_server.url, _pages(profile, admin=is_admin), user.email.split("@")[0])
            assert problems == [], problems
            # site.js (not an inline style attribute) sized the memory bar.
            page.goto(f"{live_server.url}/servers/")
            width = page.evaluate("document.querySelector('.membar .mem-other').style.width")
            assert width.endswith("%"), width
            if is_admin:
                _confirm_still_asks(page, live_server.url)
            _name_still_follows_the_model(page, live_server.url)
    assert isinstance(User.objects.get(pk=member.pk), User)


def _confirm_still_asks(page: Any, base: str) -> None:
    """The users page's filter submits on change without an inline handler."""
    page.goto(f"{base}/users/")
    page.select_option("#status-filter", "pending")
    page.wait_for_url("**/users/?status=pending")


def _name_still_follows_the_model(page: Any, base: str) -> None:
    """The new-profile form names the profile after the model from site.js, not an inline script."""
    page.goto(f"{base}/profiles/new/")
    page.fill("[name=model]", "mlx-community/Qwen3-4B-4bit")
    assert page.input_value("[name=name]") == "qwen3-4b-4bit"
