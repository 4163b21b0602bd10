"""The administrators' users page: every action, the last-admin protection, bad input."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts import services
from accounts.models import User, UserStatus
from conftest import PASSWORD

pytestmark = pytest.mark.postgres

POST_ONLY = ("approve", "disable", "enable", "grant-admin", "revoke-admin", "rights")
LAST_ADMIN = "last active administrator"


def _messages(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def test_list_puts_pending_first_and_filters_by_status(admin_client: Client, make_user: Callable[..., User]) -> None:
    make_user("aaron@example.com")
    make_user("zoe@example.com", status=UserStatus.PENDING)
    make_user("mia@example.com", status=UserStatus.DISABLED)
    make_user("bea@example.com", status=UserStatus.PENDING)
    response = admin_client.get("/users/")
    emails = [u.email for u in response.context["users"]]
    assert emails[:2] == ["bea@example.com", "zoe@example.com"]
    assert set(emails[2:]) == {"aaron@example.com", "admin@example.com", "mia@example.com"}
    assert 'title="2 awaiting approval"' in response.content.decode()  # the nav badge
    pending = admin_client.get("/users/?status=pending")
    assert [u.email for u in pending.context["users"]] == ["bea@example.com", "zoe@example.com"]
    disabled = admin_client.get("/users/?status=disabled")
    assert [u.email for u in disabled.context["users"]] == ["mia@example.com"]
    junk = admin_client.get("/users/?status=<script>")
    assert junk.status_code == 200 and len(junk.context["users"]) == 5


def test_non_admin_gets_403_for_every_users_page(user_client: Client, make_user: Callable[..., User]) -> None:
    other = make_user(status=UserStatus.PENDING)
    assert user_client.get("/users/").status_code == 403
    for action in (*POST_ONLY, "password", "delete"):
        assert user_client.post(f"/users/{other.pk}/{action}/").status_code == 403
    assert User.objects.get(pk=other.pk).status == UserStatus.PENDING


def test_approve_lets_the_account_log_in(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    bob = make_user("bob@example.com", status=UserStatus.PENDING)
    response = admin_client.post(f"/users/{bob.pk}/approve/", follow=True)
    assert "bob@example.com is approved." in _messages(response)
    bob.refresh_from_db()
    assert bob.status == UserStatus.APPROVED and bob.approved_by == admin_user and bob.approved_at
    assert Client().post("/accounts/login/", {"username": "bob@example.com", "password": PASSWORD}).status_code == 302
    first_approval = bob.approved_at
    admin_client.post(f"/users/{bob.pk}/approve/")  # again: nothing changes
    bob.refresh_from_db()
    assert bob.approved_at == first_approval


def test_disable_enable_grant_revoke(admin_client: Client, make_user: Callable[..., User]) -> None:
    bob = make_user("bob@example.com")
    admin_client.post(f"/users/{bob.pk}/disable/")
    assert User.objects.get(pk=bob.pk).status == UserStatus.DISABLED
    admin_client.post(f"/users/{bob.pk}/enable/")
    assert User.objects.get(pk=bob.pk).status == UserStatus.APPROVED
    admin_client.post(f"/users/{bob.pk}/grant-admin/")
    bob.refresh_from_db()
    assert bob.is_admin and bob.is_superuser
    admin_client.post(f"/users/{bob.pk}/revoke-admin/")
    bob.refresh_from_db()
    assert not bob.is_admin and not bob.is_superuser


def test_action_keeps_the_list_filter(admin_client: Client, make_user: Callable[..., User]) -> None:
    bob = make_user(status=UserStatus.PENDING)
    response = admin_client.post(f"/users/{bob.pk}/approve/", {"status": "pending"})
    assert response["Location"] == "/users/?status=pending"
    response = admin_client.post(f"/users/{bob.pk}/disable/", {"status": "bogus"})
    assert response["Location"] == "/users/"


def test_htmx_action_returns_the_updated_row(admin_client: Client, make_user: Callable[..., User]) -> None:
    bob = make_user("bob@example.com", status=UserStatus.PENDING)
    response = admin_client.post(f"/users/{bob.pk}/approve/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith(f'<tr id="user-{bob.pk}">')
    assert "Approved" in body and "Disable" in body and "<html" not in body


def test_last_admin_can_be_neither_disabled_demoted_nor_deleted(admin_client: Client, admin_user: User) -> None:
    for action in ("disable", "revoke-admin"):
        response = admin_client.post(f"/users/{admin_user.pk}/{action}/", follow=True)
        assert LAST_ADMIN in _messages(response)
    response = admin_client.post(f"/users/{admin_user.pk}/delete/", follow=True)
    assert LAST_ADMIN in _messages(response)
    # htmx: the row says why.
    response = admin_client.post(f"/users/{admin_user.pk}/disable/", headers={"HX-Request": "true"})
    assert LAST_ADMIN in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.status == UserStatus.APPROVED and admin_user.is_admin


def test_a_disabled_admin_does_not_count_as_another_admin(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    make_user("old-admin@example.com", admin=True, status=UserStatus.DISABLED)
    make_user("pending-admin@example.com", admin=True, status=UserStatus.PENDING)
    admin_client.post(f"/users/{admin_user.pk}/revoke-admin/")
    assert User.objects.get(pk=admin_user.pk).is_admin


def test_with_two_admins_one_may_step_down(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    other = make_user("second@example.com", admin=True)
    admin_client.post(f"/users/{other.pk}/revoke-admin/")
    assert not User.objects.get(pk=other.pk).is_admin
    # Now admin_user is the last one again.
    admin_client.post(f"/users/{admin_user.pk}/revoke-admin/")
    assert User.objects.get(pk=admin_user.pk).is_admin


def test_the_protection_is_in_the_services_for_anyone(admin_user: User) -> None:
    for change in (
        lambda: services.user_disable(user=admin_user, by=admin_user),
        lambda: services.user_set_admin(user=admin_user, is_admin=False, by=admin_user),
        lambda: services.user_delete(user=admin_user, by=admin_user),
        lambda: services.users_delete(users=[admin_user], by=admin_user),
    ):
        with pytest.raises(services.LastAdminError):
            change()
    admin_user.status = UserStatus.PENDING
    with pytest.raises(services.LastAdminError):
        services.user_save(user=admin_user, by=admin_user)
    assert User.objects.get(pk=admin_user.pk).status == UserStatus.APPROVED


def test_delete_asks_first_then_deletes(admin_client: Client, make_user: Callable[..., User]) -> None:
    bob = make_user("bob@example.com")
    confirm = admin_client.get(f"/users/{bob.pk}/delete/")
    assert confirm.status_code == 200 and "Delete this account?" in confirm.content.decode()
    assert User.objects.filter(pk=bob.pk).exists()
    response = admin_client.post(f"/users/{bob.pk}/delete/", follow=True)
    assert "bob@example.com is deleted." in _messages(response)
    assert not User.objects.filter(pk=bob.pk).exists()


def test_admin_resets_a_password_with_django_validators(admin_client: Client, make_user: Callable[..., User]) -> None:
    bob = make_user("bob@example.com")
    bob_client = Client()
    bob_client.force_login(bob)
    url = f"/users/{bob.pk}/password/"
    assert admin_client.get(url).status_code == 200
    for p1, p2 in (("123", "123"), ("password123", "password123"), ("a-good-pass-99", "a-good-pass-98"), ("", "")):
        response = admin_client.post(url, {"new_password1": p1, "new_password2": p2})
        assert response.status_code == 200 and response.context["form"].errors
    new = "fresh-staple-horse-31"
    response = admin_client.post(url, {"new_password1": new, "new_password2": new})
    assert response.status_code == 302
    assert bob_client.get("/servers/").status_code == 302  # Bob's old session ended with it
    # Bob signs in through the login form: the new password works, the old one no longer does.
    old_login = Client().post("/accounts/login/", {"username": "bob@example.com", "password": PASSWORD})
    assert old_login.status_code == 200 and old_login.context["form"].errors
    new_login = Client()
    assert new_login.post("/accounts/login/", {"username": "bob@example.com", "password": new}).status_code == 302
    assert new_login.get("/servers/").status_code == 200
    assert admin_client.get("/users/").status_code == 200


def test_admin_resetting_their_own_password_stays_logged_in(admin_client: Client, admin_user: User) -> None:
    new = "fresh-staple-horse-31"
    admin_client.post(f"/users/{admin_user.pk}/password/", {"new_password1": new, "new_password2": new})
    assert admin_client.get("/users/").status_code == 200


@pytest.mark.parametrize("action", [*POST_ONLY, "password", "delete"])
def test_unknown_user_id_is_404(admin_client: Client, action: str) -> None:
    assert admin_client.post(f"/users/999999/{action}/").status_code == 404
    if action not in POST_ONLY:
        assert admin_client.get(f"/users/999999/{action}/").status_code == 404
    assert admin_client.get(f"/users/abc/{action}/").status_code == 404


@pytest.mark.parametrize("action", POST_ONLY)
def test_get_on_post_only_actions_is_405(admin_client: Client, make_user: Callable[..., User], action: str) -> None:
    bob = make_user(status=UserStatus.PENDING)
    assert admin_client.get(f"/users/{bob.pk}/{action}/").status_code == 405
    assert User.objects.get(pk=bob.pk).status == UserStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(make_user: Callable[..., User]) -> None:
    ann, ben = make_user("ann@example.com", admin=True), make_user("ben@example.com", admin=True)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(user: User, by: User) -> None:
        try:
            barrier.wait()
            services.user_set_admin(user=user, is_admin=False, by=by)
            outcomes.append("done")
        except services.LastAdminError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=pair) for pair in ((ann, ben), (ben, ann))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["done", "refused"]
    assert User.objects.filter(is_staff=True, status=UserStatus.APPROVED).count() == 1


def _operator_with_unsafe_options(make_user: Callable[..., User], admin_client: Client) -> tuple[User, str]:
    """A member who may operate every server through a group and use unsafe options on their own;
    and their row on the Users page."""
    from django.contrib.auth.models import Group, Permission

    operators = Group.objects.create(name="operators")
    operators.permissions.add(Permission.objects.get(codename="operate_any_server"))
    member = make_user("ops@example.com")
    member.groups.add(operators)
    member.user_permissions.add(Permission.objects.get(codename="use_unsafe_options"))
    html = admin_client.get("/users/").content.decode()
    return member, html[html.index("ops@example.com") :].split("</tr>")[0]


def test_users_page_shows_granted_rights_and_links_to_editing_them(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    member, row = _operator_with_unsafe_options(make_user, admin_client)
    assert "may also operate every server, use unsafe server options" in row
    assert f'href="/admin/accounts/user/{member.pk}/change/#id_groups"' in row
    # The change page edits groups and permissions, with our codenames among the choices.
    form = admin_client.get(f"/admin/accounts/user/{member.pk}/change/").content.decode()
    assert 'name="groups"' in form and 'name="user_permissions"' in form and "Can stop and restart every server" in form


def test_an_admin_gives_a_member_exactly_the_ticked_rights_on_the_users_page(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    from audit.models import AuditRecord

    member, row = _operator_with_unsafe_options(make_user, admin_client)
    assert 'value="profiles.use_unsafe_options" checked' in row
    assert 'value="servers.operate_any_server">' in row, "a group's right is not the account's own"

    wanted = {"rights": ["gateway.read_metrics", "library.delete_any_model"]}
    response = admin_client.post(f"/users/{member.pk}/rights/", wanted, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "rights are saved" in response.content.decode()
    member = User.objects.get(pk=member.pk)  # a fresh permission cache
    assert member.direct_rights == {"gateway.read_metrics", "library.delete_any_model"}
    assert member.has_perm("servers.operate_any_server"), "the group's right stays"
    assert not member.has_perm("profiles.use_unsafe_options")
    changes = AuditRecord.objects.filter(subject="ops@example.com").values_list("action", "message")
    assert sorted(changes) == [
        ("grant permission", "gateway.read_metrics"),
        ("grant permission", "library.delete_any_model"),
        ("revoke permission", "profiles.use_unsafe_options"),
    ]


def test_rights_refuses_what_cannot_be_granted_and_members(
    admin_client: Client, user_client: Client, make_user: Callable[..., User]
) -> None:
    member = make_user("ops@example.com")
    bad = admin_client.post(
        f"/users/{member.pk}/rights/", {"rights": ["auth.delete_user"]}, headers={"HX-Request": "true"}
    )
    assert bad.status_code == 400 and "is not one of the available choices" in bad.content.decode()
    assert user_client.post(f"/users/{member.pk}/rights/", {"rights": ["gateway.read_metrics"]}).status_code == 403
    assert User.objects.get(pk=member.pk).direct_rights == set()
