"""API keys: the pages (make, shown once, revoke; administrators), the check every door uses, and
the profile form's aliases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User, UserStatus
from gateway.keys import authenticate_key
from gateway.models import ApiKey
from gateway.services import key_create
from profiles.forms import ProfileForm
from profiles.models import ServerProfile
from servers.models import DesiredState, Server

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def login(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def test_new_key_is_shown_once_stored_hashed_and_works(approved_user: User) -> None:
    client = login(approved_user)
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    answer = client.post("/accounts/keys/new/", {"name": "laptop", "profiles": [tiny.pk]})
    assert answer.status_code == 302
    page = client.get("/accounts/keys/").content.decode()
    secret = re.search(r'id="new-api-key"[^>]*>([^<]+)<', page)[1]  # type: ignore[index]
    assert secret.startswith("mlxm_")
    key = ApiKey.objects.get(user=approved_user)
    assert secret not in key.secret_hash and key.prefix == secret[: len(key.prefix)]
    assert list(key.profiles.all()) == [tiny]
    assert 'id="new-api-key"' not in client.get("/accounts/keys/").content.decode()  # once
    found = authenticate_key(secret)
    assert found == key and found.last_used_at is not None
    assert key.prefix in client.get("/accounts/keys/").content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "Give the key a name"),
        ({"name": "x", "expires_at": "yesterday"}, "Enter a date and time"),
        ({"name": "x", "expires_at": "2001-01-01T10:00"}, "must be in the future"),
        ({"name": "x", "profiles": ["99999"]}, "Select a valid choice"),
    ],
)
def test_bad_key_form_says_why(approved_user: User, data: dict[str, Any], message: str) -> None:
    answer = login(approved_user).post("/accounts/keys/new/", data)
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not ApiKey.objects.exists()


def test_revoke_own_not_others_unless_admin(make_user: Any, admin_user: User) -> None:
    alice, bob = make_user("a@example.com"), make_user("b@example.com")
    bobs = key_create(user=bob, name="bob's").key
    assert login(alice).post(f"/accounts/keys/{bobs.pk}/revoke/").status_code == 403
    assert ApiKey.objects.get(pk=bobs.pk).revoked_at is None
    admin = login(admin_user)
    listed = admin.get(f"/accounts/keys/?user={bob.pk}").content.decode()
    assert "bob&#x27;s" in listed and "b@example.com" in listed
    assert "bob&#x27;s" not in login(alice).get("/accounts/keys/").content.decode()
    assert admin.post(f"/accounts/keys/{bobs.pk}/revoke/").status_code == 302
    assert ApiKey.objects.get(pk=bobs.pk).revoked_at is not None


@pytest.mark.parametrize("owner", ["²", "99999999999999999999", "-1", "x"])
def test_a_bad_owner_filter_shows_everyones_keys_not_a_500(make_user: Any, admin_user: User, owner: str) -> None:
    key_create(user=make_user("b@example.com"), name="bob's")
    answer = login(admin_user).get("/accounts/keys/", {"user": owner})
    assert answer.status_code == 200 and "bob&#x27;s" in answer.content.decode()


def test_authenticate_key_refuses_every_unusable_key(make_user: Any) -> None:
    user = make_user()
    secret = key_create(user=user, name="k").secret
    assert authenticate_key(secret) is not None
    assert authenticate_key("") is None and authenticate_key("mlxm_nope") is None
    expired = key_create(user=user, name="old", expires_at=timezone.now() - timedelta(seconds=1)).secret
    assert authenticate_key(expired) is None
    for status in (UserStatus.DISABLED, UserStatus.PENDING):
        user.status = status
        user.save(update_fields=["status"])
        assert authenticate_key(secret) is None


def test_read_metrics_permission_exists() -> None:
    from django.contrib.auth.models import Permission

    assert Permission.objects.filter(content_type__app_label="gateway", codename="read_metrics").exists()


def _form(**fields: Any) -> ProfileForm:
    data = {"name": "new", "model": "/models/x", "host": "127.0.0.1", "port": "9100", "log_level": "INFO", **fields}
    return ProfileForm(data=data)


def test_aliases_unique_across_profiles_ignoring_case(db: Any, tmp_path: Any) -> None:
    ServerProfile.objects.create(name="qwen", aliases="gpt-4o, fast", model="/m", port=9001)
    (tmp_path / "config.json").write_text("{}")
    form = _form(aliases="GPT-4O, mine", model=str(tmp_path))
    assert not form.is_valid()
    assert "already answers to" in str(form.errors["aliases"])
    form = _form(name="FAST", model=str(tmp_path))
    assert not form.is_valid() and "already answers to" in str(form.errors["name"])
    form = _form(aliases=" mine ,  other,MINE ", model=str(tmp_path))
    form.is_valid()
    assert "aliases" not in form.errors
    assert form.cleaned_data["aliases"] == "mine, other"


def test_a_key_made_in_the_page_may_manage_only_when_ticked(approved_user: User) -> None:
    """The README's JSON API examples POST with a key that may manage: the key page makes one."""
    client = login(approved_user)
    assert client.post("/accounts/keys/new/", {"name": "script", "may_manage": "on"}).status_code == 302
    manager_secret = re.search(r'id="new-api-key"[^>]*>([^<]+)<', client.get("/accounts/keys/").content.decode())[1]  # type: ignore[index]
    assert client.post("/accounts/keys/new/", {"name": "chat"}).status_code == 302
    user_secret = re.search(r'id="new-api-key"[^>]*>([^<]+)<', client.get("/accounts/keys/").content.decode())[1]  # type: ignore[index]
    assert ApiKey.objects.get(name="script").may_manage and not ApiKey.objects.get(name="chat").may_manage
    assert "manages" in client.get("/accounts/keys/").content.decode()

    mine = ServerProfile.objects.create(name="mine", model="/m", port=9123, owner=approved_user)
    start = f"/api/v1/servers/{mine.pk}/start"
    api = Client()
    refused = api.post(start, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {user_secret}")
    assert refused.status_code == 403 and "may only use models" in refused.content.decode()
    done = api.post(start, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {manager_secret}")
    assert done.status_code == 200, done.content
    assert Server.objects.get(profile=mine).desired_state == DesiredState.RUNNING
