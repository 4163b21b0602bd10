"""A live gateway: the web app under gunicorn as `make run` serves it (testing/web.py), a real
supervisor and a real `mlx_lm.server` on the tiny model, on the pytest test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import server_start
from servers.states import State
from testing.net import free_port
from testing.supervisor import wait_for
from testing.web import WebServer


@dataclass
class Live:
    web: WebServer
    profile: ServerProfile
    user: User
    secret: str
    make_user: Callable[..., User]

    @property
    def base_url(self) -> str:
        return self.web.url + "/v1"

    def new_secret(self, user: User | None = None, **kwargs: Any) -> str:
        return key_create(user=user or self.user, name="test", **kwargs).secret


def start_profile(model: Path, name: str, supervisor_process: Any, **fields: Any) -> ServerProfile:
    profile = ServerProfile.objects.create(name=name, model=str(model), port=free_port(), **fields)
    server_start(profile=profile, by=None)
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what=f"{name} to run")
    supervisor_process.remember_servers()
    return profile


@pytest.fixture
def live(supervisor_process: Any, tiny_model: Path, tmp_path: Path, make_user: Callable[..., User]) -> Iterator[Live]:
    supervisor_process.start()
    profile = start_profile(tiny_model, "tiny", supervisor_process, aliases="gpt-4o-mini, claude-tiny")
    user = make_user("member@example.com")
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        yield Live(
            web=web, profile=profile, user=user, secret=key_create(user=user, name="laptop").secret, make_user=make_user
        )
    finally:
        web.stop()
