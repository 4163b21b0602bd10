"""Users through the API: the same services, so the last-administrator guard holds."""

from __future__ import annotations

from collections.abc import Callable

from accounts.models import User, UserStatus
from api.tests.conftest import ApiClient


def test_an_administrator_approves_promotes_and_cannot_remove_the_last_admin(
    admin_api: ApiClient, admin_user: User, make_user: Callable[..., User]
) -> None:
    waiting = make_user("new@example.com", status=UserStatus.PENDING)
    assert admin_api.call("get", "/users/pending-count").json() == {"pending": 1}
    assert admin_api.call("get", "/users/?status=pending").json()[0]["email"] == "new@example.com"
    assert admin_api.call("post", f"/users/{waiting.pk}/approve").json()["status"] == "approved"
    assert [u["email"] for u in admin_api.call("get", "/users/?status=approved").json()] == [
        "admin@example.com",
        "new@example.com",
    ]
    last = admin_api.call("post", f"/users/{admin_user.pk}/revoke-admin")
    assert last.status_code == 409
    assert last.json()["detail"].startswith("This is the last active administrator")
    assert admin_api.call("post", f"/users/{waiting.pk}/grant-admin").json()["is_admin"] is True
    assert admin_api.call("post", f"/users/{waiting.pk}/disable").json()["status"] == "disabled"
    assert admin_api.call("post", f"/users/{waiting.pk}/enable").json()["status"] == "approved"
    weak = admin_api.call("post", f"/users/{waiting.pk}/password", {"password": "123"})
    assert weak.status_code == 400 and weak.json()["field"] == "password"
    assert (
        admin_api.call("post", f"/users/{waiting.pk}/password", {"password": "a-long-new-pass-42"}).status_code == 200
    )
    waiting.refresh_from_db()
    assert waiting.check_password("a-long-new-pass-42")
    assert admin_api.call("delete", f"/users/{waiting.pk}").status_code == 204
    assert not User.objects.filter(pk=waiting.pk).exists()
    assert admin_api.call("delete", f"/users/{admin_user.pk}").status_code == 409
