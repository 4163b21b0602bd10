"""Registration: the first account is the administrator (also under a race), later ones wait;
bad input gives form errors."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts.models import User, UserStatus
from conftest import PASSWORD

pytestmark = pytest.mark.postgres


def _register(client: Client, email: str, password1: str = PASSWORD, password2: str | None = None) -> Any:
    data = {"email": email, "password1": password1, "password2": password1 if password2 is None else password2}
    return client.post("/accounts/register/", data)


@pytest.mark.django_db
def test_first_account_is_an_approved_admin_and_logged_in() -> None:
    client = Client()
    response = _register(client, "Boss@Example.com")
    assert response.status_code == 302 and response["Location"] == "/servers/"
    boss = User.objects.get()
    assert boss.email == "Boss@example.com"
    assert boss.is_admin and boss.is_superuser and boss.status == UserStatus.APPROVED and boss.approved_at
    assert client.get("/users/").status_code == 200  # logged in, and an administrator


@pytest.mark.django_db
def test_later_accounts_are_pending_and_see_the_pending_page(admin_user: User) -> None:
    client = Client()
    response = _register(client, "bob@example.com")
    assert response["Location"] == "/accounts/pending/"
    bob = User.objects.get(email="bob@example.com")
    assert bob.status == UserStatus.PENDING and not bob.is_admin and not bob.is_superuser
    page = client.get("/accounts/pending/")
    assert b"awaiting approval" in page.content
    assert "_auth_user_id" not in client.session  # not logged in


def _race_registrations(emails: list[str]) -> list[int]:
    """Register every email at the same instant, one thread (and database connection) each."""
    barrier = threading.Barrier(len(emails))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def register(email: str) -> None:
        try:
            client = Client()
            barrier.wait()
            statuses.append(_register(client, email).status_code)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return statuses


@pytest.mark.django_db(transaction=True)
def test_simultaneous_first_registrations_make_exactly_one_admin() -> None:
    """Several threads (each its own connection to the file-based test database) register at
    the same instant on an empty table, a few rounds over: exactly one admin every time."""
    assert connection.settings_dict["NAME"] != ":memory:"
    racers = 4
    for round_no in range(3):
        User.objects.all().delete()
        statuses = _race_registrations([f"racer{round_no}-{n}@example.com" for n in range(racers)])
        assert statuses == [302] * racers
        assert User.objects.count() == racers
        assert User.objects.filter(is_staff=True).count() == 1
        assert User.objects.filter(is_superuser=True).count() == 1
        assert User.objects.filter(status=UserStatus.PENDING).count() == racers - 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_registrations_of_one_email_make_one_account_and_answer_alike() -> None:
    statuses = _race_registrations(["same@example.com", "SAME@example.com", "Same@Example.com"])
    assert sorted(statuses) == [302, 302, 302]
    assert User.objects.filter(email__iexact="same@example.com").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com", "", "x" * 250 + "@e.com"])
def test_malformed_email_is_a_form_error(email: str) -> None:
    response = _register(Client(), email)
    assert response.status_code == 200
    assert response.context["form"].errors["email"]
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email",
    [
        "CAROL@example.com",
        "Carol@Example.COM",
        " carol@example.com ",
        "carol@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",  # fullwidth EXAMPLE: NFKC makes it plain
        "\uff43\uff41\uff52\uff4f\uff4c@example.com",  # fullwidth carol
        "carol@EXAMPLE.com",
    ],
)
def test_registering_an_existing_email_creates_nothing_and_gives_no_hint(
    make_user: Callable[..., User], admin_user: User, email: str
) -> None:
    make_user("carol@example.com")
    fresh = _register(Client(), "dave@example.com")
    again = _register(Client(), email)
    assert (
        (again.status_code, again["Location"]) == (fresh.status_code, fresh["Location"]) == (302, "/accounts/pending/")
    )
    assert User.objects.filter(email__iexact="carol@example.com").count() == 1
    assert User.objects.count() == 3  # admin, carol, dave
    assert _without_tokens(Client().get(again["Location"])) == _without_tokens(Client().get(fresh["Location"]))


def _without_tokens(response: Any) -> str:
    return re.sub(r"[A-Za-z0-9]{32,}", "TOKEN", response.content.decode())  # CSRF tokens differ per client


@pytest.mark.django_db
def test_international_domains_are_stored_idna_encoded_and_marked_for_the_approver(
    admin_client: Client, admin_user: User, make_user: Callable[..., User]
) -> None:
    _register(Client(), "eve@bücher.example")
    assert User.objects.filter(email="eve@xn--bcher-kva.example").exists()
    _register(Client(), "eve@BÜCHER.example")  # the same domain: no second account
    assert User.objects.filter(email__startswith="eve@").count() == 1
    make_user("zoë@bücher.example")  # made before this rule, or in Django admin: marked for a closer look
    html = admin_client.get("/users/").content.decode()
    row = html[html.index("zoë@bücher.example") :][:600]
    assert "data-non-ascii" in row
    assert "data-non-ascii" not in html[html.index("eve@xn--bcher-kva.example") :][:300]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password1", "password2", "fragment", "field"),
    [
        ("short", "short", "too short", "password1"),
        ("password123", "password123", "too common", "password1"),
        ("83749283749283", "83749283749283", "entirely numeric", "password1"),
        ("dave@example.com1", "dave@example.com1", "too similar", "password1"),
        (PASSWORD, PASSWORD + "x", "match", "password2"),
    ],
)
def test_weak_or_mismatched_passwords_are_form_errors(
    password1: str, password2: str, fragment: str, field: str
) -> None:
    """A weak password's error under the password, a mismatch under its confirmation: each once."""
    response = _register(Client(), "dave@example.com", password1, password2)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert fragment in str(errors[field]) and list(errors) == [field]
    assert not User.objects.exists()
