"""Limits of a person, their groups and their keys: how they combine, and the pages and the admin
that set them (a key narrows its owner's limits, never widens them)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.limits import LimitSet, most_generous, person_limits, person_limits_combine
from accounts.models import GroupLimits, User, UserLimits
from audit.models import AuditRecord
from gateway.models import ApiKey


def login(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def test_groups_give_their_most_generous_value_and_a_blank_group_value_lifts_nothing() -> None:
    interns = LimitSet(requests_per_minute=10, tokens_per_day=1000)
    staff = LimitSet(requests_per_minute=60)
    assert most_generous([interns, staff]) == LimitSet(requests_per_minute=60, tokens_per_day=1000)
    assert most_generous([]) == LimitSet()


def test_a_person_s_own_value_wins_over_the_groups_wider_or_narrower() -> None:
    own = LimitSet(requests_per_minute=5, tokens_per_month=10**6)
    groups = [LimitSet(requests_per_minute=60, tokens_per_day=1000, tokens_per_month=10)]
    assert person_limits_combine(own, groups) == LimitSet(
        requests_per_minute=5, tokens_per_day=1000, tokens_per_month=10**6
    )


def test_a_key_narrows_and_over_names_what_a_key_would_widen() -> None:
    person = LimitSet(requests_per_minute=60, max_concurrent=4)
    key = LimitSet(requests_per_minute=100, tokens_per_day=500, max_concurrent=2)
    assert key.narrowed_by(person) == LimitSet(requests_per_minute=60, tokens_per_day=500, max_concurrent=2)
    assert key.over(person) == {"requests_per_minute": 60}
    assert not LimitSet() and LimitSet(max_concurrent=1)


@pytest.mark.django_db
def test_person_limits_reads_the_person_s_row_and_their_groups(make_user: object) -> None:
    user: User = make_user("ann@example.com")  # type: ignore[operator]
    assert person_limits(user) == LimitSet()
    small, big = Group.objects.create(name="small"), Group.objects.create(name="big")
    GroupLimits.objects.create(group=small, requests_per_minute=10, tokens_per_day=100)
    GroupLimits.objects.create(group=big, requests_per_minute=50)
    Group.objects.create(name="no limits").user_set.add(user)
    user.groups.add(small, big)
    UserLimits.objects.create(user=user, tokens_per_day=5000)
    assert person_limits(user) == LimitSet(requests_per_minute=50, tokens_per_day=5000)


@pytest.mark.django_db
def test_the_users_page_sets_a_person_s_limits_audited_and_refuses_a_bad_value(
    admin_user: User, make_user: object
) -> None:
    member: User = make_user("bob@example.com")  # type: ignore[operator]
    client = login(admin_user)
    assert f"/users/{member.pk}/limits/" in client.get("/users/").content.decode()
    page = client.get(f"/users/{member.pk}/limits/")
    assert page.status_code == 200 and 'name="tokens_per_day"' in page.content.decode()
    refused = client.post(f"/users/{member.pk}/limits/", {"requests_per_minute": "0"})
    assert refused.status_code == 400 and "At least 1" in refused.content.decode()
    saved = client.post(f"/users/{member.pk}/limits/", {"requests_per_minute": "30", "tokens_per_day": ""})
    assert saved.status_code == 302
    assert LimitSet.of(member.limits) == LimitSet(requests_per_minute=30)
    assert "limits: 30 req/min" in " ".join(client.get("/users/").content.decode().split())
    assert AuditRecord.objects.filter(action="set limits", subject__contains="requests_per_minute 30").exists()
    assert login(member).get(f"/users/{member.pk}/limits/").status_code == 403


@pytest.mark.django_db
def test_a_key_may_narrow_but_not_widen_its_owner_s_limits(make_user: object) -> None:
    member: User = make_user("cy@example.com")  # type: ignore[operator]
    UserLimits.objects.create(user=member, tokens_per_day=1000)
    client = login(member)
    assert "at most 1,000" in client.get("/accounts/keys/").content.decode()
    wide = client.post("/accounts/keys/new/", {"name": "wide", "tokens_per_day": "2000"})
    assert wide.status_code == 400
    assert "At most 1,000: your own limit" in wide.content.decode()
    assert not ApiKey.objects.filter(user=member).exists()
    narrow = client.post("/accounts/keys/new/", {"name": "ci", "tokens_per_day": "200", "requests_per_minute": "5"})
    assert narrow.status_code == 302
    key = ApiKey.objects.get(user=member)
    assert LimitSet.of(key) == LimitSet(requests_per_minute=5, tokens_per_day=200)
    assert "5 req/min 200 tok/day" in " ".join(client.get("/accounts/keys/").content.decode().split())


@pytest.mark.django_db
def test_the_admin_edits_group_and_person_limits(admin_user: User) -> None:
    client = login(admin_user)
    group = Group.objects.create(name="interns")
    page = client.get(f"/admin/auth/group/{group.pk}/change/").content.decode()
    assert "limits-0-tokens_per_month" in page
    page = client.get("/admin/accounts/userlimits/add/").content.decode()
    assert 'name="requests_per_minute"' in page
