"""Registration: the first account is the administrator (also under a race), later ones wait;
bad input gives form errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts.models import User, UserStatus
from conftest import PASSWORD


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
def test_simultaneous_registrations_of_one_email_give_a_form_error_not_a_500() -> None:
    statuses = _race_registrations(["same@example.com", "SAME@example.com", "Same@Example.com"])
    assert sorted(statuses) == [200, 200, 302]
    assert User.objects.filter(email__iexact="same@example.com").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com", "", "x" * 250 + "@e.com"])
def test_malformed_email_is_a_form_error(email: str) -> None:
    response = _register(Client(), email)
    assert response.status_code == 200
    assert response.context["form"].errors["email"]
    assert not User.objects.exists()


@pytest.mark.django_db
def test_duplicate_email_in_another_case_is_a_form_error(make_user: Callable[..., User]) -> None:
    make_user("carol@example.com")
    for email in ("CAROL@example.com", "Carol@Example.COM", " carol@example.com "):
        response = _register(Client(), email)
        assert response.status_code == 200
        assert "already exists" in str(response.context["form"].errors["email"])
    assert User.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password1", "password2", "fragment"),
    [
        ("short", "short", "too short"),
        ("password123", "password123", "too common"),
        ("83749283749283", "83749283749283", "entirely numeric"),
        ("dave@example.com1", "dave@example.com1", "too similar"),
        (PASSWORD, PASSWORD + "x", "match"),
    ],
)
def test_weak_or_mismatched_passwords_are_form_errors(password1: str, password2: str, fragment: str) -> None:
    response = _register(Client(), "dave@example.com", password1, password2)
    assert response.status_code == 200
    assert fragment in str(response.context["form"].errors["password2"])
    assert not User.objects.exists()
