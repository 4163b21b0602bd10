from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import User
from profiles import services
from profiles.models import ServerProfile
from profiles.tests.test_ports import _unused_port_block
from servers.models import Server

pytestmark = pytest.mark.postgres


def test_create_records_who_and_refuses_a_raced_duplicate(
    make_profile: Callable[..., ServerProfile], approved_user: User
) -> None:
    fields = {"name": "Chat", "model": "mlx-community/Qwen3-4B-4bit", "port": 9100}
    profile = services.profile_create(fields=fields, by=approved_user)
    assert profile.pk and profile.created_by == approved_user
    # Another request wrote the same name (other case) after our form had checked it.
    with pytest.raises(services.ProfileConflict, match="took the name"):
        services.profile_create(fields={**fields, "name": "CHAT", "port": 9101}, by=approved_user)
    with pytest.raises(services.ProfileConflict):
        services.profile_create(fields={**fields, "name": "Other", "port": 9100}, by=approved_user)
    assert ServerProfile.objects.count() == 1


def test_update_writes_the_fields(make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile(name="Chat", temperature=None)
    services.profile_update(profile=profile, fields={"temperature": 0.6, "name": "Chat 2"}, by=None)
    profile.refresh_from_db()
    assert (profile.temperature, profile.name) == (0.6, "Chat 2")


@pytest.mark.parametrize(
    ("existing", "source", "expected"),
    [
        ([], "Chat", "Chat (copy)"),
        (["Chat (copy)"], "Chat", "Chat (copy 2)"),
        (["chat (COPY)", "CHAT (copy 2)"], "Chat", "Chat (copy 3)"),
        (["Chat (copy)"], "Chat (copy)", "Chat (copy 2)"),
    ],
)
def test_duplicate_names(
    make_profile: Callable[..., ServerProfile], existing: list[str], source: str, expected: str
) -> None:
    for name in existing:
        make_profile(name=name)
    original = ServerProfile.objects.filter(name=source).first() or make_profile(name=source)
    assert services.profile_duplicate(profile=original, by=None).name == expected


def test_duplicate_name_stays_within_the_length_limit(make_profile: Callable[..., ServerProfile]) -> None:
    long = make_profile(name="x" * 100)
    copy = services.profile_duplicate(profile=long, by=None)
    assert len(copy.name) <= 100 and copy.name.endswith(" (copy)")


def test_duplicate_copies_settings_with_a_free_port_and_auto_start_off(
    make_profile: Callable[..., ServerProfile], settings: Any, approved_user: User
) -> None:
    base = _unused_port_block(10)
    settings.MLXM_PORT_BASE = base
    original = make_profile(
        name="Chat", port=base, auto_start=True, temperature=0.6, chat_template_args={"enable_thinking": False}
    )
    copy = services.profile_duplicate(profile=original, by=approved_user)
    assert copy.pk != original.pk
    assert copy.port == base + 1 and copy.auto_start is False and copy.created_by == approved_user
    assert (copy.model, copy.temperature, copy.chat_template_args) == (
        original.model,
        0.6,
        {"enable_thinking": False},
    )
    original.refresh_from_db()
    assert original.auto_start is True and original.port == base


@pytest.mark.parametrize(
    ("desired", "state"),
    [("running", "running"), ("running", "starting"), ("stopped", "stopping"), ("running", "stopped")],
)
def test_delete_is_refused_while_the_server_is_not_stopped(
    make_profile: Callable[..., ServerProfile], desired: str, state: str
) -> None:
    profile = make_profile(name="Chat")
    Server.objects.create(profile=profile, desired_state=desired, state=state)
    with pytest.raises(services.ProfileDeleteRefused, match="Stop it first"):
        services.profile_delete(profile=profile, by=None)
    assert ServerProfile.objects.filter(pk=profile.pk).exists()


@pytest.mark.parametrize("state", ["stopped", "fatal", None])
def test_delete_of_a_stopped_profile(make_profile: Callable[..., ServerProfile], state: str | None) -> None:
    profile = make_profile(name="Chat")
    if state:
        Server.objects.create(profile=profile, desired_state="stopped", state=state)
    services.profile_delete(profile=profile, by=None)
    assert not ServerProfile.objects.filter(pk=profile.pk).exists()
    assert not Server.objects.exists()
