"""The audit page in a real Chromium: the filters work without JavaScript, it reads at 1280 px and
on a phone, in light and dark, and a member is refused."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from audit.models import AuditKind
from audit.services import audit_record
from conftest import browser_login, screenshot
from profiles.models import ServerProfile


def seed(admin: User, member: User) -> None:
    profile = ServerProfile.objects.create(name="Qwen3 4B Instruct", model="mlx-community/Qwen3-4B-4bit", port=8301)
    audit_record(kind=AuditKind.USER, action="approve", subject=member.email, by=admin)
    audit_record(kind=AuditKind.PROFILE, action="create", subject=profile.name, by=member, profile_id=profile.pk)
    audit_record(kind=AuditKind.SERVER, action="start", subject=profile.name, by=member, profile_id=profile.pk)
    audit_record(
        kind=AuditKind.SERVER,
        action="starting → running",
        subject=profile.name,
        profile_id=profile.pk,
        message="health: answered /health and a one-token generation",
    )
    audit_record(kind=AuditKind.SERVER, action="stop", subject=profile.name, by=admin, profile_id=profile.pk)
    audit_record(
        kind=AuditKind.DOWNLOAD, action="download", subject="mlx-community/Mistral-7B-Instruct-v0.3-4bit", by=admin
    )


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_audit_page_in_a_browser(
    live_server: Any, page: Any, admin_user: User, approved_user: User, scheme: str
) -> None:
    seed(admin_user, approved_user)
    page.emulate_media(color_scheme=scheme)
    browser_login(page, live_server.url, admin_user.email)
    page.goto(f"{live_server.url}/audit/")
    assert page.locator("h1").inner_text() == "Audit trail"
    assert page.locator("tr.audit-record").count() == 6
    screenshot(page, f"audit-desktop-{scheme}")

    page.select_option("select[name=person]", approved_user.email)
    page.click("form.audit-filter button[type=submit]")
    page.wait_for_url("**/audit/?person=*")
    assert page.locator("tr.audit-record").count() == 2

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/audit/")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    screenshot(page, f"audit-phone-{scheme}")


@pytest.mark.browser
def test_a_member_is_refused_and_has_their_activity_page(
    live_server: Any, page: Any, admin_user: User, approved_user: User
) -> None:
    seed(admin_user, approved_user)
    browser_login(page, live_server.url, approved_user.email)
    assert page.goto(f"{live_server.url}/audit/").status == 403
    page.goto(f"{live_server.url}/servers/")
    page.click("nav >> text=Activity")
    assert page.locator("h1").inner_text() == "Activity on your profiles"
    assert page.locator("tr.audit-record").count() == 0  # the profile is not theirs
