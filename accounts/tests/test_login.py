"""Login: pending and disabled accounts are told why, unknown emails and wrong passwords are
not told apart, a disabled user loses access mid-session, repeated failures lock out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import User, UserStatus
from conftest import PASSWORD

INVALID = "Email or password is not right."


def _login(client: Client, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post("/accounts/login/", {"username": email, "password": password}, **extra)


def _form_errors(response: Any) -> str:
    return " ".join(response.context["form"].non_field_errors())


@pytest.mark.django_db
def test_approved_user_logs_in_with_email_in_any_case(approved_user: User) -> None:
    client = Client()
    response = _login(client, "ALICE@Example.com")
    assert response.status_code == 302 and response["Location"] == "/servers/"
    assert client.get("/servers/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "message"),
    [(UserStatus.PENDING, "awaiting approval"), (UserStatus.DISABLED, "disabled")],
)
def test_pending_and_disabled_accounts_are_told_why(make_user: Callable[..., User], status: str, message: str) -> None:
    make_user("erin@example.com", status=status)
    client = Client()
    response = _login(client, "erin@example.com")
    assert response.status_code == 200
    assert message in _form_errors(response)
    assert message in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_wrong_password_does_not_tell_whether_the_email_exists(make_user: Callable[..., User]) -> None:
    make_user("frank@example.com", status=UserStatus.PENDING)
    make_user("gina@example.com", status=UserStatus.DISABLED)
    make_user("hank@example.com")
    for email in ("frank@example.com", "gina@example.com", "hank@example.com", "nobody@example.com"):
        response = _login(Client(), email, "wrong-password-1")
        assert _form_errors(response) == INVALID, email


@pytest.mark.django_db
def test_malformed_login_input_is_a_form_error() -> None:
    for data in ({"username": "not-an-email", "password": "x"}, {"username": "", "password": ""}, {}):
        response = Client().post("/accounts/login/", data)
        assert response.status_code == 200
        assert response.context["form"].errors


def test_user_disabled_mid_session_loses_access_on_next_request(user_client: Client, admin_user: User) -> None:
    assert user_client.get("/servers/").status_code == 200
    alice = User.objects.get(email="alice@example.com")
    services.user_disable(user=alice, by=admin_user)
    response = user_client.get("/servers/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in user_client.session
    login_page = user_client.get(response["Location"])
    assert "Your account is disabled" in login_page.content.decode()
    # An htmx poll from a disabled session is sent to the login page as a whole.
    user_client.force_login(alice)
    response = user_client.get("/servers/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == "/accounts/login/"


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_from_that_address_with_the_time_it_ends(
    approved_user: User, settings: Any
) -> None:
    for n in range(settings.AXES_FAILURE_LIMIT):
        email = "ALICE@Example.com" if n % 2 else "alice@example.com"  # one lock whatever the case
        response = _login(Client(), email, "wrong-password-1", REMOTE_ADDR="10.0.0.1")
        last = n == settings.AXES_FAILURE_LIMIT - 1
        assert response.status_code == (429 if last else 200)  # the failure that reaches the limit locks
    client = Client()
    response = _login(client, "alice@example.com", PASSWORD, REMOTE_ADDR="10.0.0.1")  # even the right password
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed attempts" in html
    until = datetime.fromisoformat(re.search(r'data-locked-until="([^"]+)"', html).group(1))  # type: ignore[union-attr]
    expected = timezone.now() + timedelta(hours=settings.AXES_COOLOFF_TIME)
    assert abs((until - expected).total_seconds()) < 120
    assert f"until {timezone.localtime(until):%H:%M}" in html
    assert "_auth_user_id" not in client.session
    # The same account from another address is not locked: the count is per account and address.
    assert _login(Client(), "alice@example.com", PASSWORD, REMOTE_ADDR="10.0.0.2").status_code == 302


@pytest.mark.django_db
def test_wrong_passwords_for_other_emails_do_not_lock_the_administrator_out(
    make_user: Callable[..., User], settings: Any
) -> None:
    make_user("boss@example.com", admin=True)
    for n in range(settings.AXES_FAILURE_LIMIT + 2):
        _login(Client(), f"guess{n % 2}@example.com", "wrong-password-1", REMOTE_ADDR="10.0.2.2")
    assert _login(Client(), "guess0@example.com", "wrong-password-1", REMOTE_ADDR="10.0.2.2").status_code == 429
    assert _login(Client(), "boss@example.com", PASSWORD, REMOTE_ADDR="10.0.2.2").status_code == 302


@pytest.mark.django_db
def test_strangers_failing_at_the_administrators_email_do_not_lock_them_out(
    make_user: Callable[..., User], settings: Any
) -> None:
    make_user("boss@example.com", admin=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(), "boss@example.com", "wrong-password-1", REMOTE_ADDR="10.0.3.3")
    assert _login(Client(), "boss@example.com", PASSWORD, REMOTE_ADDR="10.0.3.3").status_code == 429
    assert _login(Client(), "boss@example.com", PASSWORD, REMOTE_ADDR="10.0.3.4").status_code == 302


@pytest.mark.django_db
def test_behind_a_proxy_the_lock_follows_the_forwarded_address(make_user: Callable[..., User], settings: Any) -> None:
    """Every request comes from the proxy's address; one guesser must not lock everybody out."""
    settings.BEHIND_TLS_PROXY = True
    make_user("ivan@example.com")
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(), "ivan@example.com", "wrong-password-1", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    guesser = _login(Client(), "ivan@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    assert guesser.status_code == 429
    colleague = _login(Client(), "ivan@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)
    assert colleague.status_code == 302
    # A forged header does not help the guesser: the proxy appends the address it really saw.
    forged = _login(Client(), "ivan@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9", **proxy)
    assert forged.status_code == 429


@pytest.mark.django_db
@pytest.mark.parametrize("status", [UserStatus.PENDING, UserStatus.DISABLED])
def test_pending_and_disabled_accounts_can_log_out(make_user: Callable[..., User], status: str) -> None:
    user = make_user("waiting@example.com", status=status)
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    assert "_auth_user_id" in client.session
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only(user_client: Client) -> None:
    assert user_client.get("/accounts/logout/").status_code == 405
    assert user_client.get("/servers/").status_code == 200
    response = user_client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert user_client.get("/servers/").status_code == 302


def test_account_page_shows_who_and_changes_password_keeping_the_session(user_client: Client) -> None:
    page = user_client.get("/accounts/").content.decode()
    assert "alice@example.com" in page and "Approved" in page and "User" in page
    new = "another-horse-battery-77"
    weak = user_client.post("/accounts/", {"old_password": PASSWORD, "new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and weak.context["form"].errors["new_password2"]
    wrong_old = user_client.post("/accounts/", {"old_password": "nope", "new_password1": new, "new_password2": new})
    assert wrong_old.status_code == 200 and wrong_old.context["form"].errors["old_password"]
    response = user_client.post("/accounts/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302
    assert user_client.get("/servers/").status_code == 200  # still logged in
    assert User.objects.get(email="alice@example.com").check_password(new)
