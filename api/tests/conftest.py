"""Keys for the API tests: an administrator's and a member's, each may manage or only use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from gateway.models import ApiKey
from gateway.services import key_create

KeyMaker = Callable[..., str]


@pytest.fixture
def make_key(db: Any) -> KeyMaker:
    def make(user: User, *, manage: bool = True) -> str:
        new = key_create(user=user, name="script")
        ApiKey.objects.filter(pk=new.key.pk).update(may_manage=manage)
        return new.secret

    return make


class ApiClient(Client):
    """Django's test client that sends a bearer key and JSON bodies."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def call(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        kwargs: dict[str, Any] = {"headers": headers, **extra}
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        return getattr(self, method.lower())("/api/v1" + path, **kwargs)


@pytest.fixture
def admin_api(admin_user: User, make_key: KeyMaker) -> ApiClient:
    return ApiClient(make_key(admin_user))


@pytest.fixture
def member_api(approved_user: User, make_key: KeyMaker) -> ApiClient:
    return ApiClient(make_key(approved_user))


@pytest.fixture
def using_only_api(admin_user: User, make_key: KeyMaker) -> ApiClient:
    """An administrator's key that may only use models: it still may not change anything."""
    return ApiClient(make_key(admin_user, manage=False))
