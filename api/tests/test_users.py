"""Users through the API: the same services, so the last-administrator guard holds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.models import User, UserStatus
from api.tests.conftest import ApiClient
from audit.models import AuditRecord

pytestmark = pytest.mark.postgres


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


def test_an_administrator_grants_and_revokes_each_permission_of_the_design(
    admin_api: ApiClient, approved_user: User
) -> None:
    for permission in (
        "servers.operate_any_server",
        "profiles.manage_any_profile",
        "profiles.use_unsafe_options",
        "library.delete_any_model",
        "gateway.read_metrics",
    ):
        granted = admin_api.call("post", f"/users/{approved_user.pk}/grant-permission", {"permission": permission})
        assert granted.status_code == 200 and permission in granted.json()["permissions"]
        assert User.objects.get(pk=approved_user.pk).has_perm(permission)
        revoked = admin_api.call("post", f"/users/{approved_user.pk}/revoke-permission", {"permission": permission})
        assert revoked.status_code == 200 and permission not in revoked.json()["permissions"]
        assert not User.objects.get(pk=approved_user.pk).has_perm(permission)
    assert AuditRecord.objects.filter(action="grant permission", message="gateway.read_metrics").exists()


def test_an_unknown_permission_is_400_naming_the_field(admin_api: ApiClient, approved_user: User) -> None:
    for permission in ("auth.add_user", "servers.no_such_thing", "", "operate_any_server"):
        response = admin_api.call("post", f"/users/{approved_user.pk}/grant-permission", {"permission": permission})
        assert response.status_code == 400, (permission, response.status_code)
        assert (
            response.json()["field"] == "permission"
            and "not a permission that can be granted" in response.json()["detail"]
        )
    missing = admin_api.call("post", f"/users/{approved_user.pk}/grant-permission", {})
    assert missing.status_code == 400 and missing.json()["field"] == "permission"
    assert not User.objects.get(pk=approved_user.pk).user_permissions.exists()


def test_an_administrator_may_step_down_only_while_another_remains(
    admin_api: ApiClient, admin_user: User, make_user: Callable[..., User]
) -> None:
    alone = admin_api.call("post", f"/users/{admin_user.pk}/revoke-admin")
    assert alone.status_code == 409 and alone.json()["field"] == "is_admin"
    assert "last active administrator" in alone.json()["detail"]
    other = make_user("bob@example.com", admin=True)
    disabled_admin = make_user("carol@example.com", admin=True, status=UserStatus.DISABLED)
    assert admin_api.call("post", f"/users/{admin_user.pk}/revoke-admin").json()["is_admin"] is False
    assert User.objects.get(pk=admin_user.pk).is_admin is False
    # The key's user is no administrator now: its own key is refused the users' endpoints.
    assert admin_api.call("post", f"/users/{other.pk}/revoke-admin").status_code == 403
    assert User.objects.get(pk=other.pk).is_admin and not User.objects.get(pk=disabled_admin.pk).is_approved


def test_the_last_approved_administrator_is_kept_though_a_disabled_one_exists(
    admin_api: ApiClient, admin_user: User, make_user: Callable[..., User]
) -> None:
    make_user("carol@example.com", admin=True, status=UserStatus.DISABLED)
    refused = admin_api.call("post", f"/users/{admin_user.pk}/revoke-admin")
    assert refused.status_code == 409 and refused.json()["field"] == "is_admin"
    assert admin_api.call("post", f"/users/{admin_user.pk}/disable").status_code == 409
    assert User.objects.get(pk=admin_user.pk).is_admin


def test_a_member_or_a_using_only_key_may_not_grant(
    member_api: ApiClient, using_only_api: ApiClient, approved_user: User
) -> None:
    body = {"permission": "servers.operate_any_server"}
    for client, detail in ((member_api, "Only administrators"), (using_only_api, "may only use models")):
        for action in ("grant-permission", "revoke-permission", "grant-admin", "revoke-admin"):
            response = client.call("post", f"/users/{approved_user.pk}/{action}", body)
            assert response.status_code == 403 and detail in response.json()["detail"], (action, response.content)
    assert not User.objects.get(pk=approved_user.pk).has_perm("servers.operate_any_server")
    assert not User.objects.get(pk=approved_user.pk).is_admin
