"""The whole approval flow in a real Chromium (Playwright) against a live server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User, UserStatus
from conftest import PASSWORD, browser_login, hidden_sideways, screenshot, screenshots

pytestmark = pytest.mark.browser


def _register(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/register/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")


def _logout(page: Any) -> None:
    page.click("header form button:has-text('Log out')")
    page.wait_for_url("**/accounts/login/")


def test_register_admin_then_approve_a_second_account(page: Any, live_server: Any) -> None:
    base = live_server.url
    page.goto(f"{base}/servers/")
    page.wait_for_url("**/accounts/login/?next=/servers/")
    screenshot(page, "accounts-login")

    page.goto(f"{base}/accounts/register/")
    screenshot(page, "accounts-register")
    _register(page, base, "boss@example.com")
    page.wait_for_url("**/servers/")
    assert page.locator(".messages").inner_text().startswith("Welcome!")
    assert page.locator("nav a:has-text('Users')").count() == 1
    _logout(page)

    _register(page, base, "bob@example.com")
    page.wait_for_url("**/accounts/pending/")
    assert "awaiting approval" in page.locator("main").inner_text()
    screenshot(page, "accounts-pending")
    # Bob cannot log in yet, and is told why.
    browser_login(page, base, "bob@example.com")
    assert "awaiting approval" in page.locator("form .errorlist").inner_text()

    browser_login(page, base, "boss@example.com")
    page.wait_for_url("**/servers/")
    assert page.locator("nav a:has-text('Users') .badge").inner_text() == "1"
    page.click("nav a:has-text('Users')")
    page.wait_for_url("**/users/")
    row = page.locator("tr", has_text="bob@example.com")
    assert "Pending" in row.inner_text()
    screenshot(page, "accounts-users")
    row.locator("button:has-text('Approve')").click()  # htmx swaps the row in place
    page.locator("tr", has_text="bob@example.com").locator(".badge-ok").wait_for()
    assert "bob@example.com is approved." in page.locator("tr", has_text="bob@example.com").inner_text()
    bob = User.objects.get(email="bob@example.com")
    assert bob.status == UserStatus.APPROVED and bob.approved_by is not None
    assert bob.approved_by.email == "boss@example.com"
    # Rights, ticked on the page (no trip to Django admin), saved in place.
    row = page.locator("tr", has_text="bob@example.com")
    row.locator(".user-rights summary").click()
    row.locator("input[value='gateway.read_metrics']").check()
    screenshots(page, "accounts-users-rights")
    row.locator("button:has-text('Save rights')").click()
    expect(page.locator("tr", has_text="bob@example.com")).to_contain_text("may also read the Prometheus metrics")
    assert User.objects.get(email="bob@example.com").has_perm("gateway.read_metrics")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.locator("tr", has_text="bob@example.com").locator(".user-rights summary").click()
    screenshot(page, "accounts-users-390px")
    # One card per user that fits the phone: nothing hidden past the table's scrolling box.
    hidden = hidden_sideways(page, ".users-table")
    assert hidden <= 0, f"the users table is {hidden}px wider than a phone's screen"
    page.set_viewport_size({"width": 1280, "height": 900})
    _logout(page)

    browser_login(page, base, "bob@example.com")
    page.wait_for_url("**/servers/")
    assert page.locator("nav a:has-text('Users')").count() == 0
    page.click("nav a:has-text('bob@example.com')")
    page.wait_for_url("**/accounts/")
    assert "bob@example.com" in page.locator("dl.facts").inner_text()
    screenshot(page, "accounts-account")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "accounts-account-390px")


def test_users_page_works_without_javascript(browser_instance: Any, live_server: Any, make_user: Any) -> None:
    make_user("boss@example.com", admin=True)
    bob = make_user("bob@example.com", status=UserStatus.PENDING)
    context = browser_instance.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        browser_login(page, live_server.url, "boss@example.com")
        page.wait_for_url("**/servers/")
        page.goto(f"{live_server.url}/users/?status=pending")
        page.locator("tr", has_text="bob@example.com").locator("button:has-text('Approve')").click()
        page.wait_for_url("**/users/?status=pending")
        assert "bob@example.com is approved." in page.locator(".messages").inner_text()
        assert User.objects.get(pk=bob.pk).status == UserStatus.APPROVED
        page.goto(f"{live_server.url}/users/{bob.pk}/delete/")
        page.click("button:has-text('Delete bob@example.com')")
        page.wait_for_url("**/users/")
        assert not User.objects.filter(pk=bob.pk).exists()
    finally:
        context.close()


@pytest.mark.django_db(transaction=True)
def test_approve_updates_the_pending_badge_and_your_own_row_offers_nothing_refused(
    page: Any, live_server: Any, admin_user: User, make_user: Any
) -> None:
    waiting = make_user("waiting@example.com", status=UserStatus.PENDING)
    browser_login(page, live_server.url, admin_user.email)
    page.goto(f"{live_server.url}/users/")
    badge = page.locator("#pending-badge")
    assert badge.inner_text().strip() == "1"
    own = page.locator(f"#user-{admin_user.pk}")
    assert own.locator("button", has_text="Disable").count() == 0
    assert own.locator("a", has_text="Delete").count() == 0
    assert "another administrator" in own.inner_text()
    screenshot(page, "users-before-approve")
    page.locator(f"#user-{waiting.pk} button", has_text="Approve").click()
    page.locator(f"#user-{waiting.pk} .message-success").wait_for()
    expect(page.locator("#pending-badge")).to_have_text(re.compile(r"^\s*$"))
    screenshot(page, "users-after-approve")


def test_a_common_password_is_refused_under_the_password_and_registrations_are_audited(
    page: Any, live_server: Any
) -> None:
    base = live_server.url
    page.goto(f"{base}/accounts/register/")
    page.fill("input[name=email]", "boss@example.com")
    page.fill("input[name=password1]", "password")
    page.fill("input[name=password2]", "password")
    page.click("form button[type=submit]")
    under_password = page.locator("#id_password1 + .errorlist")
    expect(under_password).to_contain_text("too common")
    assert page.locator("#id_password2 + .errorlist").count() == 0, "not under the confirmation"
    expect(page.locator("#id_password1")).to_have_attribute("aria-invalid", "true")
    screenshots(page, "accounts-register-common-password")

    _register(page, base, "boss@example.com")
    page.wait_for_url("**/servers/")
    _logout(page)
    _register(page, base, "bob@example.com")
    page.wait_for_url("**/accounts/pending/")
    browser_login(page, base, "boss@example.com")
    page.goto(f"{base}/audit/")
    rows = page.locator("tr", has_text="register")
    expect(rows.filter(has_text="bob@example.com")).to_contain_text("waits for approval")
    expect(rows.filter(has_text="boss@example.com").last).to_contain_text("administrator")
