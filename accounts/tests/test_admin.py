"""Django admin for accounts: status filter, approve/disable actions, last-admin protection in
the actions, the change form and both ways of deleting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.admin import UserAdminChangeForm
from accounts.models import User, UserStatus

pytestmark = pytest.mark.postgres

LAST_ADMIN = "last active administrator"
CHANGELIST = "/admin/accounts/user/"


def _messages(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def _change_data(user: User, **changes: Any) -> dict[str, Any]:
    data = {"email": user.email, "status": user.status, "is_staff": "on", "is_superuser": "on"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_changelist_filters_by_status(admin_client: Client, make_user: Callable[..., User]) -> None:
    make_user("zoe@example.com", status=UserStatus.PENDING)
    make_user("mia@example.com", status=UserStatus.DISABLED)
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200 and "?status__exact=pending" in page.content.decode()
    pending = admin_client.get(CHANGELIST + "?status__exact=pending")
    assert [u.email for u in pending.context["cl"].result_list] == ["zoe@example.com"]


def test_approve_and_disable_actions(admin_client: Client, admin_user: User, make_user: Callable[..., User]) -> None:
    zoe = make_user("zoe@example.com", status=UserStatus.PENDING)
    response = admin_client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [zoe.pk]}, follow=True)
    zoe.refresh_from_db()
    assert zoe.status == UserStatus.APPROVED and zoe.approved_by == admin_user
    assert "1 account(s) approved" in _messages(response)
    admin_client.post(CHANGELIST, {"action": "disable_selected", "_selected_action": [zoe.pk]})
    assert User.objects.get(pk=zoe.pk).status == UserStatus.DISABLED


def test_disable_action_spares_the_last_admin(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    zoe = make_user("zoe@example.com")
    response = admin_client.post(
        CHANGELIST, {"action": "disable_selected", "_selected_action": [zoe.pk, admin_user.pk]}, follow=True
    )
    assert LAST_ADMIN in _messages(response)
    assert User.objects.get(pk=zoe.pk).status == UserStatus.DISABLED
    assert User.objects.get(pk=admin_user.pk).status == UserStatus.APPROVED


def test_change_form_refuses_to_remove_the_last_admin(admin_client: Client, admin_user: User) -> None:
    url = f"{CHANGELIST}{admin_user.pk}/change/"
    assert admin_client.get(url).status_code == 200
    for changes in ({"status": UserStatus.DISABLED}, {"status": UserStatus.PENDING}, {"is_staff": None}):
        response = admin_client.post(url, _change_data(admin_user, **changes))
        assert response.status_code == 200
        assert LAST_ADMIN in str(response.context["adminform"].form.non_field_errors())
    admin_user.refresh_from_db()
    assert admin_user.status == UserStatus.APPROVED and admin_user.is_staff
    # A harmless change still saves.
    response = admin_client.post(url, _change_data(admin_user, email="boss@example.com"))
    assert response.status_code == 302
    assert User.objects.get(pk=admin_user.pk).email == "boss@example.com"


def test_change_form_lets_an_admin_go_when_another_remains(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    other = make_user("second@example.com", admin=True)
    response = admin_client.post(f"{CHANGELIST}{other.pk}/change/", _change_data(other, status=UserStatus.DISABLED))
    assert response.status_code == 302
    assert User.objects.get(pk=other.pk).status == UserStatus.DISABLED


def test_delete_view_and_bulk_delete_spare_the_last_admin(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    url = f"{CHANGELIST}{admin_user.pk}/delete/"
    for response in (admin_client.get(url, follow=True), admin_client.post(url, {"post": "yes"}, follow=True)):
        assert LAST_ADMIN in _messages(response)
    zoe = make_user("zoe@example.com")
    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_selected_users", "_selected_action": [zoe.pk, admin_user.pk], "post": "yes"},
        follow=True,
    )
    assert LAST_ADMIN in _messages(response)
    assert User.objects.filter(pk__in=[zoe.pk, admin_user.pk]).count() == 2
    # Other accounts delete as usual, after Django's confirmation page.
    confirm = admin_client.post(CHANGELIST, {"action": "delete_selected_users", "_selected_action": [zoe.pk]})
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    admin_client.post(CHANGELIST, {"action": "delete_selected_users", "_selected_action": [zoe.pk], "post": "yes"})
    assert not User.objects.filter(pk=zoe.pk).exists()
    admin_client.post(f"{CHANGELIST}{make_user('ann@example.com').pk}/delete/", {"post": "yes"})
    assert not User.objects.filter(email="ann@example.com").exists()


def test_admin_adds_an_account_pending_by_default(admin_client: Client) -> None:
    pw = "a-fine-password-31"
    response = admin_client.post(
        f"{CHANGELIST}add/", {"email": "new@example.com", "usable_password": "true", "password1": pw, "password2": pw}
    )
    assert response.status_code == 302
    assert User.objects.get(email="new@example.com").status == UserStatus.PENDING


def test_change_form_approval_records_who_and_when(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    zoe = make_user("zoe@example.com", status=UserStatus.PENDING)
    response = admin_client.post(
        f"{CHANGELIST}{zoe.pk}/change/", _change_data(zoe, status=UserStatus.APPROVED, is_staff=None)
    )
    assert response.status_code == 302
    zoe.refresh_from_db()
    assert zoe.status == UserStatus.APPROVED and zoe.approved_by == admin_user and zoe.approved_at is not None
    first = zoe.approved_at
    # Disabled and enabled again in the form: the first approval is kept, as on the users page.
    for status in (UserStatus.DISABLED, UserStatus.APPROVED):
        admin_client.post(f"{CHANGELIST}{zoe.pk}/change/", _change_data(zoe, status=status, is_staff=None))
    zoe.refresh_from_db()
    assert zoe.status == UserStatus.APPROVED and zoe.approved_at == first


def test_change_form_superuser_follows_staff(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    zoe = make_user("zoe@example.com")
    url = f"{CHANGELIST}{zoe.pk}/change/"
    assert admin_client.post(url, _change_data(zoe, is_superuser=None)).status_code == 302
    zoe.refresh_from_db()
    assert zoe.is_staff and zoe.is_superuser  # an app administrator is a Django superuser
    assert admin_client.post(url, _change_data(zoe, is_staff=None)).status_code == 302
    zoe.refresh_from_db()
    assert not zoe.is_staff and not zoe.is_superuser  # demotion removes both


def test_last_admin_lost_between_the_form_check_and_the_save_is_a_message_not_a_500(
    admin_client: Client, admin_user: User, make_user: Callable[..., User], monkeypatch: Any
) -> None:
    other = make_user("second@example.com", admin=True)
    checked = UserAdminChangeForm.clean

    def clean_then_meanwhile(form: UserAdminChangeForm) -> dict[str, Any]:
        cleaned = checked(form)
        # Fault injection: another administrator disables the signed-in one right after the check.
        User.objects.filter(pk=admin_user.pk).update(status=UserStatus.DISABLED)
        return cleaned

    monkeypatch.setattr(UserAdminChangeForm, "clean", clean_then_meanwhile)
    url = f"{CHANGELIST}{other.pk}/change/"
    response = admin_client.post(url, _change_data(other, status=UserStatus.DISABLED))
    assert response.status_code == 302 and response["Location"] == url
    User.objects.filter(pk=admin_user.pk).update(status=UserStatus.APPROVED)  # to read the message
    assert LAST_ADMIN in _messages(admin_client.get(url))
    assert User.objects.get(pk=other.pk).status == UserStatus.APPROVED
