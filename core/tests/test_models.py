"""QuickLoadModel: rows loaded without Model.__init__ are the same instances __init__ would make."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models
from django.db.models.signals import post_init

from profiles.models import ServerProfile
from servers.models import Server, ServerState

pytestmark = pytest.mark.django_db


def _fields(instance: models.Model) -> dict[str, Any]:
    return {key: value for key, value in instance.__dict__.items() if key != "_state"}


def _loaded_by_init(queryset: models.QuerySet[Any]) -> list[Any]:
    """The same rows as Django's own `Model.from_db` loads them (through `__init__`)."""
    model = queryset.model
    original = model.from_db
    model.from_db = classmethod(models.Model.from_db.__func__)  # type: ignore[assignment, attr-defined]
    try:
        return list(queryset)
    finally:
        model.from_db = original  # type: ignore[method-assign]


@pytest.mark.parametrize("only", [(), ("name", "port", "server__state", "server__pid")])
def test_rows_load_as_init_would_make_them(only: tuple[str, ...]) -> None:
    profile = ServerProfile.objects.create(name="alpha", model="/m", port=9001)
    Server.objects.create(profile=profile, state=ServerState.RUNNING, pid=42)
    ServerProfile.objects.create(name="beta", model="/m", port=9002)  # no server row
    queryset = ServerProfile.objects.select_related("server").order_by("name")
    if only:
        queryset = queryset.only(*only)
    quick, slow = list(queryset), _loaded_by_init(queryset)
    assert [_fields(row) for row in quick] == [_fields(row) for row in slow]
    assert [_fields(row.server) for row in quick[:1]] == [_fields(row.server) for row in slow[:1]]
    assert not quick[0]._state.adding and quick[0]._state.db == "default"
    assert quick[0].get_deferred_fields() == slow[0].get_deferred_fields()
    assert quick[0].model == "/m"  # a deferred column loads on first use
    assert quick[0].server.state == ServerState.RUNNING and quick[0].server.pid == 42
    with pytest.raises(Server.DoesNotExist):
        quick[1].server  # noqa: B018


def test_a_post_init_receiver_gets_init_as_before() -> None:
    ServerProfile.objects.create(name="alpha", model="/m", port=9001)
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    post_init.connect(receiver, sender=ServerProfile)
    try:
        loaded = ServerProfile.objects.get(name="alpha")
    finally:
        post_init.disconnect(receiver, sender=ServerProfile)
    assert seen == [loaded]
