from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import User
from profiles.models import ServerProfile
from testing.net import free_port


@pytest.fixture
def make_profile(db: Any) -> Callable[..., ServerProfile]:
    def make(name: str, *, by: User | None = None, model: str = "mlx-community/Tiny-4bit") -> ServerProfile:
        return ServerProfile.objects.create(name=name, model=model, port=free_port(), created_by=by)

    return make
