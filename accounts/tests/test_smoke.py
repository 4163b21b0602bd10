from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User, UserStatus
from conftest import PASSWORD


@pytest.mark.django_db
def test_first_account_is_admin_second_is_pending() -> None:
    client = Client()
    response = client.post(
        "/accounts/register/", {"email": "Boss@Example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    boss = User.objects.get()
    assert boss.is_admin and boss.is_superuser and boss.status == UserStatus.APPROVED

    other = Client()
    response = other.post(
        "/accounts/register/", {"email": "bob@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response["Location"] == "/accounts/pending/"
    assert User.objects.get(email="bob@example.com").status == UserStatus.PENDING


@pytest.mark.django_db
def test_healthz_is_open_and_dashboard_is_not() -> None:
    client = Client()
    assert client.get("/healthz").json() == {"ok": True}
    response = client.get("/servers/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_dashboard_renders_for_approved_user(user_client: Client) -> None:
    response = user_client.get("/servers/")
    assert response.status_code == 200
    assert b"alice@example.com" in response.content
