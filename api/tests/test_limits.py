"""`/api/v1/limits/`: use against limits, one's own; administrators one person's or everyone's."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User, UserLimits
from api.tests.conftest import ApiClient
from gateway.limits.admission import Admission, admit, caller_limits_read, settle


@pytest.fixture(autouse=True)
def _own_store(settings: Any, tmp_path: Any) -> None:
    settings.MLXM_DATA_DIR = tmp_path


def spend(user: User, tokens: int) -> None:
    verdict = admit(caller_limits_read(user=user, key=None))
    assert isinstance(verdict, Admission)
    settle(verdict, prompt_tokens=tokens, completion_tokens=0)


def test_the_api_lists_use_against_limits(approved_user: User, admin_user: User, make_key: Any) -> None:
    UserLimits.objects.create(user=approved_user, tokens_per_month=100)
    spend(approved_user, 30)
    member = ApiClient(make_key(approved_user, manage=False))
    (mine,) = member.call("get", "/limits/").json()
    assert mine["holder"] == "person" and mine["limits"][0] | {"renews_at": None} == {
        "limit": "tokens_per_month", "value": 100, "used": 30, "remaining": 70, "percent": 30,
        "renews_at": None, "warn": False,
    }  # fmt: skip
    assert member.call("get", f"/limits/?user={admin_user.pk}").status_code == 403
    assert member.call("get", "/limits/?everyone=true").status_code == 403
    boss = ApiClient(make_key(admin_user))
    assert boss.call("get", f"/limits/?user={approved_user.pk}").json() == [mine]
    assert boss.call("get", "/limits/?user=99999999999").status_code == 404
    assert [h["name"] for h in boss.call("get", "/limits/?everyone=true").json()] == [approved_user.email]
