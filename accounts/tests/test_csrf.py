"""CSRF is enforced on every POST: each URL pattern of the project (walked, so later views are
covered too), signed in as an administrator and anonymously, without a token gets 403."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import User, UserStatus
from accounts.tests.test_url_walk import API_NAMESPACE, KEY_AUTHENTICATED
from accounts.tests.urlwalk import all_urls
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _refused_without_token(client: Client, *, skip: frozenset[str] = frozenset()) -> list[str]:
    failures = []
    for walked in all_urls():
        # /api/v1/ takes no session at all (a key in a header, which no other site can send): no
        # token to forge; api/tests/test_auth.py proves its 401s.
        if walked.name in skip or walked.name.startswith(API_NAMESPACE):
            continue
        response = client.post(walked.url, {"username": "x@example.com", "password": "x"})
        if response.status_code != 403 or b"CSRF" not in response.content:
            failures.append(f"{walked}: {response.status_code}")
    return failures


def test_every_post_without_token_is_refused_for_an_admin(admin_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert _refused_without_token(client) == []


def test_every_post_without_token_is_refused_for_anonymous() -> None:
    # Without a session there is nothing to forge: the key-authenticated API answers 401 instead
    # (test_url_walk checks that); with a session it refuses the missing token (above).
    assert _refused_without_token(Client(enforce_csrf_checks=True), skip=frozenset(KEY_AUTHENTICATED)) == []


def test_the_token_from_the_page_makes_the_post_work(admin_user: User, make_user: Callable[..., User]) -> None:
    bob = make_user(status=UserStatus.PENDING)
    client = Client(enforce_csrf_checks=True)
    login_page = client.get("/accounts/login/")
    token = login_page.context["csrf_token"]
    response = client.post(
        "/accounts/login/", {"username": admin_user.email, "password": PASSWORD, "csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302
    page = client.get("/users/")
    response = client.post(f"/users/{bob.pk}/approve/", {"csrfmiddlewaretoken": str(page.context["csrf_token"])})
    assert response.status_code == 302
    assert User.objects.get(pk=bob.pk).status == UserStatus.APPROVED
    # htmx sends the token in a header (base.html's hx-headers on <body>).
    assert f'"X-CSRFToken": "{page.context["csrf_token"]}"' in page.content.decode()
