"""Use against limits where people act on it: the Usage page, the keys page (a budget at 80 %
shows), and `/api/v1/limits/`; a person sees their own, administrators everyone's."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.limits import LimitSet
from accounts.models import User, UserLimits
from gateway.limits.admission import Admission, admit, caller_limits_read, settle
from gateway.limits.standing import standings_of
from gateway.services import key_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_store(settings: Any, tmp_path: Any) -> None:
    """A fresh counter store for each test (the store lives in the data directory)."""
    settings.MLXM_DATA_DIR = tmp_path


def login(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def spend(user: User, tokens: int, key: Any = None) -> None:
    verdict = admit(caller_limits_read(user=user, key=key))
    assert isinstance(verdict, Admission)
    settle(verdict, prompt_tokens=tokens, completion_tokens=0)


def test_standings_say_used_left_and_when_each_renews(approved_user: User) -> None:
    UserLimits.objects.create(user=approved_user, tokens_per_day=1000, max_concurrent=3)
    key = key_create(user=approved_user, name="ci", limits=LimitSet(tokens_per_month=500)).key
    spend(approved_user, 850, key)
    person, ci = standings_of(approved_user)
    day, concurrent = person.standings
    assert (day.limit, day.used, day.remaining, day.percent, day.warn) == ("tokens_per_day", 850, 150, 85, True)
    assert day.renews_at is not None and (day.renews_at.hour, day.renews_at.minute) == (0, 0)
    assert (concurrent.used, concurrent.renews_at, concurrent.warn) == (0, None, False)
    assert (ci.holder, ci.name, [s.used for s in ci.standings]) == ("key", "ci", [850])
    assert ci.standings[0].warn  # 850 of 500: over, and it says so


def test_the_usage_and_keys_pages_show_use_against_limits_and_warn_at_80_percent(approved_user: User) -> None:
    UserLimits.objects.create(user=approved_user, tokens_per_day=1000)
    client = login(approved_user)
    page = client.get("/usage/").content.decode()
    assert 'data-limit="tokens_per_day"' in page and "budget-warning" not in page
    spend(approved_user, 790)
    assert "budget-warning" not in client.get("/usage/").content.decode()
    spend(approved_user, 10)
    for path in ("/usage/", "/accounts/keys/"):
        page = client.get(path).content.decode()
        assert "budget-warning" in page and "used 80 % of your tokens per day" in page, path


def test_a_member_sees_only_their_own_and_an_administrator_everyone_s(
    approved_user: User, admin_user: User, make_user: Any
) -> None:
    other = make_user("other@example.com")
    UserLimits.objects.create(user=approved_user, requests_per_minute=10)
    UserLimits.objects.create(user=other, requests_per_minute=20)
    member_page = login(approved_user).get("/usage/").content.decode()
    assert approved_user.email in member_page and other.email not in member_page.split('id="limits"')[1]
    admin_page = login(admin_user).get("/usage/").content.decode().split('id="limits"')[1]
    assert approved_user.email in admin_page and other.email in admin_page
    one = login(admin_user).get(f"/usage/?user={other.pk}").content.decode().split('id="limits"')[1]
    assert other.email in one and approved_user.email not in one.split("</article>")[0]
