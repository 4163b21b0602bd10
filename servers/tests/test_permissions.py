"""Who may do what, as a table: each role against each action, through the real views.

An allowed action works (and changes what it should); a refused one answers 403 or a form error
and changes nothing at all (profiles, servers, downloads and the model cache are compared)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from huggingface_hub import snapshot_download

from accounts.models import User
from library.local import cached_repo_ids
from library.models import Download, DownloadState
from profiles.models import ServerProfile
from servers.models import Server, ServerState

pytestmark = pytest.mark.postgres

TINY = "mlx-community/Tiny-Llama-4bit"  # on the hub stand-in
EVERYONE = "everyone"

ROLES: dict[str, list[str] | str] = {
    "member": [],
    "member+operate_any_server": ["servers.operate_any_server"],
    "member+manage_any_profile": ["profiles.manage_any_profile"],
    "member+delete_any_model": ["library.delete_any_model"],
    "member+use_unsafe_options": ["profiles.use_unsafe_options"],
    "administrator": "admin",
}


@dataclass
class World:
    client: Client
    me: User
    other: User
    mine: ServerProfile
    theirs: ServerProfile
    outside_folder: Path


def _form(profile: ServerProfile | None = None, **changes: str) -> dict[str, str]:
    data = {"name": "New one", "model": TINY, "host": "127.0.0.1", "port": "9701", "log_level": "INFO"}
    if profile is not None:
        data |= {"name": profile.name, "model": profile.model, "host": profile.host, "port": str(profile.port)}
    return data | changes


def _download_as(user: User) -> Download:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)
    return Download.objects.create(repo_id=TINY, requested_by=user, state=DownloadState.COMPLETED)


def _delete_model(w: World) -> Any:
    return w.client.post("/models/delete/", {"repo_id": TINY})


def _running(profile: ServerProfile) -> ServerProfile:
    Server.objects.create(profile=profile, desired_state="running", state=ServerState.RUNNING)
    return profile


Action = tuple[Callable[[World], Any], Callable[[World], Any], set[str]]
UNSAFE = {"member+use_unsafe_options", "administrator"}
ANY_PROFILE = {"member+manage_any_profile", "administrator"}
ANY_SERVER = {"member+operate_any_server", "administrator"}
ANY_MODEL = {"member+delete_any_model", "administrator"}

# name: (set-up, the request, roles allowed)
ACTIONS: dict[str, Action] = {
    "view every page": (
        lambda w: None,
        lambda w: _view_all(w),
        {EVERYONE},
    ),
    "create a profile": (lambda w: None, lambda w: w.client.post("/profiles/new/", _form()), {EVERYONE}),
    "edit own profile": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.mine.pk}/edit/", _form(w.mine, temperature="0.3")),
        {EVERYONE},
    ),
    "edit another's profile": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.theirs.pk}/edit/", _form(w.theirs, temperature="0.3")),
        ANY_PROFILE,
    ),
    "delete own profile": (lambda w: None, lambda w: w.client.post(f"/profiles/{w.mine.pk}/delete/"), {EVERYONE}),
    "delete another's profile": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.theirs.pk}/delete/"),
        ANY_PROFILE,
    ),
    "start own server": (lambda w: None, lambda w: w.client.post(f"/servers/{w.mine.pk}/start/"), {EVERYONE}),
    "start another's server": (
        lambda w: None,
        lambda w: w.client.post(f"/servers/{w.theirs.pk}/start/"),
        {EVERYONE},
    ),
    "stop own server": (
        lambda w: _running(w.mine),
        lambda w: w.client.post(f"/servers/{w.mine.pk}/stop/"),
        {EVERYONE},
    ),
    "stop another's server": (
        lambda w: _running(w.theirs),
        lambda w: w.client.post(f"/servers/{w.theirs.pk}/stop/"),
        ANY_SERVER,
    ),
    "restart own server": (
        lambda w: _running(w.mine),
        lambda w: w.client.post(f"/servers/{w.mine.pk}/restart/"),
        {EVERYONE},
    ),
    "restart another's server": (
        lambda w: _running(w.theirs),
        lambda w: w.client.post(f"/servers/{w.theirs.pk}/restart/"),
        ANY_SERVER,
    ),
    "download a model": (lambda w: None, lambda w: w.client.post("/models/download/", {"repo_id": TINY}), {EVERYONE}),
    "delete a model they downloaded, unused by others": (lambda w: _download_as(w.me), _delete_model, {EVERYONE}),
    "delete a model they downloaded that another's profile uses": (
        lambda w: (_download_as(w.me), ServerProfile.objects.filter(pk=w.theirs.pk).update(model=TINY)),
        _delete_model,
        ANY_MODEL,
    ),
    "delete a model someone else downloaded": (lambda w: _download_as(w.other), _delete_model, ANY_MODEL),
    "create with trust_remote_code": (
        lambda w: None,
        lambda w: w.client.post("/profiles/new/", _form(trust_remote_code="on")),
        UNSAFE,
    ),
    "create with host 0.0.0.0": (
        lambda w: None,
        lambda w: w.client.post("/profiles/new/", _form(host="0.0.0.0")),
        UNSAFE,
    ),
    "create with a model path outside the allowed roots": (
        lambda w: None,
        lambda w: w.client.post("/profiles/new/", _form(model=str(w.outside_folder))),
        UNSAFE,
    ),
    "create with a draft model outside the allowed roots": (
        lambda w: None,
        lambda w: w.client.post("/profiles/new/", _form(draft_model=str(w.outside_folder), num_draft_tokens="3")),
        UNSAFE,
    ),
    "create with an adapter path outside the allowed roots": (
        lambda w: None,
        lambda w: w.client.post("/profiles/new/", _form(adapter_path=str(w.outside_folder))),
        UNSAFE,
    ),
    "edit own profile to trust_remote_code": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.mine.pk}/edit/", _form(w.mine, trust_remote_code="on")),
        UNSAFE,
    ),
    "edit own profile to host ::": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.mine.pk}/edit/", _form(w.mine, host="::")),
        UNSAFE,
    ),
    "edit own profile to a path outside the allowed roots": (
        lambda w: None,
        lambda w: w.client.post(f"/profiles/{w.mine.pk}/edit/", _form(w.mine, model=str(w.outside_folder))),
        UNSAFE,
    ),
    "edit own profile that already trusts remote code, leaving it on": (
        lambda w: ServerProfile.objects.filter(pk=w.mine.pk).update(trust_remote_code=True),
        lambda w: w.client.post(
            f"/profiles/{w.mine.pk}/edit/", _form(w.mine, trust_remote_code="on", temperature="0.2")
        ),
        UNSAFE,
    ),
    "duplicate a profile bound to 0.0.0.0": (
        lambda w: ServerProfile.objects.filter(pk=w.theirs.pk).update(host="0.0.0.0"),
        lambda w: w.client.post(f"/profiles/{w.theirs.pk}/duplicate/"),
        UNSAFE,
    ),
}


def _view_all(w: World) -> Any:
    for url in (
        "/servers/",
        f"/servers/{w.theirs.pk}/",
        "/profiles/",
        f"/profiles/{w.theirs.pk}/",
        "/models/",
        "/system/",
        f"/profiles/check/port/?port=9999&profile={w.theirs.pk}",
    ):
        response = w.client.get(url)
        assert response.status_code == 200, url
    return response  # type: ignore[return-value]


def _snapshot() -> dict[str, Any]:
    return {
        "profiles": list(ServerProfile.objects.order_by("pk").values()),
        "servers": list(Server.objects.order_by("pk").values("profile_id", "desired_state", "restart_requested")),
        "downloads": list(Download.objects.order_by("pk").values("repo_id", "state")),
        "cache": cached_repo_ids(),
    }


@pytest.fixture
def clean_cache() -> Any:
    cache = Path(settings.HF_HUB_CACHE)
    shutil.rmtree(cache, ignore_errors=True)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def _make_role(make_user: Callable[..., User], role: str) -> User:
    grants = ROLES[role]
    if grants == "admin":
        return make_user("boss@example.com", admin=True)
    user = make_user("me@example.com")
    for dotted in grants:
        app, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh object: no stale permission cache


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", list(ROLES))
def test_role_against_action(
    role: str, action: str, make_user: Callable[..., User], hub: Any, clean_cache: Path, tiny_model: Path
) -> None:
    me = _make_role(make_user, role)
    other = make_user("other@example.com")
    client = Client()
    client.force_login(me, backend="accounts.backends.EmailBackend")
    world = World(
        client=client,
        me=me,
        other=other,
        mine=ServerProfile.objects.create(name="mine", model=TINY, port=9601, owner=me, created_by=me),
        theirs=ServerProfile.objects.create(name="theirs", model="mlx-community/Other", port=9602, owner=other),
        outside_folder=tiny_model,
    )
    setup, request, allowed = ACTIONS[action]
    setup(world)
    before = _snapshot()
    response = request(world)
    after = _snapshot()
    if EVERYONE in allowed or role in allowed:
        assert response.status_code in (200, 302), response.content.decode()[:2000]
        if action != "view every page":
            assert after != before, f"{role} may {action}, but nothing changed"
    else:
        refused_by_form = response.status_code == 200 and response.context and response.context.get("form")
        assert response.status_code == 403 or (refused_by_form and response.context["form"].errors), (
            response.status_code
        )
        assert after == before, f"{role} was refused {action}, yet something changed"


def test_pages_offer_only_what_the_person_may_do(make_user: Callable[..., User], hub: Any) -> None:
    member, other = make_user("me@example.com"), make_user("other@example.com")
    mine = ServerProfile.objects.create(name="mine", model=TINY, port=9601, owner=member)
    theirs = ServerProfile.objects.create(name="theirs", model=TINY, port=9602, owner=other)
    for profile in (mine, theirs):
        _running(profile)
    client = Client()
    client.force_login(member, backend="accounts.backends.EmailBackend")
    dashboard = client.get("/servers/").content.decode()
    cards = {name: dashboard.split(f"/servers/{p.pk}/")[1][:3000] for name, p in (("mine", mine), ("theirs", theirs))}
    assert f'formaction="/servers/{mine.pk}/stop/"' in dashboard
    assert f'formaction="/servers/{theirs.pk}/stop/"' not in dashboard
    assert f'formaction="/servers/{theirs.pk}/start/"' in dashboard and cards
    # The one-card partial the profile page polls offers the same buttons as the dashboard.
    their_card = client.get(f"/servers/{theirs.pk}/card/").content.decode()
    assert f'formaction="/servers/{theirs.pk}/start/"' in their_card
    assert f'formaction="/servers/{theirs.pk}/stop/"' not in their_card
    assert f'formaction="/servers/{mine.pk}/stop/"' in client.get(f"/servers/{mine.pk}/card/").content.decode()
    detail = client.get(f"/profiles/{theirs.pk}/").content.decode()
    assert f"/profiles/{theirs.pk}/edit/" not in detail and "Only other@example.com or an administrator" in detail
    assert f"/profiles/{mine.pk}/edit/" in client.get(f"/profiles/{mine.pk}/").content.decode()
    form = client.get("/profiles/new/").content.decode()
    assert 'name="trust_remote_code"' not in form and 'data-who-can="trust_remote_code"' in form
