"""Fixtures for the dashboard tests: profiles and server rows as the supervisor would write them,
and a real mlx_lm.server on the tiny generated model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerSample, ServerState

BASE_PORT = 20000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_profile(db: Any) -> Callable[..., ServerProfile]:
    counter = iter(range(1, 100_000))

    def make(
        name: str | None = None, *, port: int | None = None, model: str = "mlx-community/Tiny-4bit"
    ) -> ServerProfile:
        n = next(counter)
        return ServerProfile.objects.create(name=name or f"profile-{n:03d}", model=model, port=port or BASE_PORT + n)

    return make


def set_server(profile: ServerProfile, state: str, **fields: Any) -> Server:
    """Write a Server row as the supervisor would have (running ones get pid, port, memory ...)."""
    now = timezone.now()
    defaults: dict[str, Any] = {"state": state, "state_changed_at": now - timedelta(minutes=3)}
    if state in (ServerState.RUNNING, ServerState.UNHEALTHY, ServerState.STARTING):
        defaults.update(
            desired_state=DesiredState.RUNNING,
            pid=40_000 + profile.pk,
            port=profile.port,
            started_at=now - timedelta(minutes=42),
            last_health_at=now - timedelta(seconds=2),
            last_health_ms=3.5,
            rss_bytes=1_500_000_000,
            cpu_percent=12.5,
        )
    defaults.update(fields)
    server, _ = Server.objects.update_or_create(profile=profile, defaults=defaults)
    return server


def add_samples(server: Server, *, count: int = 360, every: timedelta = timedelta(seconds=10)) -> None:
    now = timezone.now()
    ServerSample.objects.bulk_create(
        ServerSample(
            server=server,
            taken_at=now - every * i,
            rss_bytes=1_000_000_000 + 1_000_000 * (i % 50),
            cpu_percent=float(i % 100),
        )
        for i in range(count)
    )


@dataclass(frozen=True)
class RealServer:
    port: int
    pid: int
    model: Path


@pytest.fixture(scope="session")
def mlx_server(tiny_model: Path) -> Iterator[RealServer]:
    """A real `mlx_lm.server` on the tiny model, answering /health before the tests use it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx_lm", "server", "--model", str(tiny_model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlx_lm.server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlx_lm.server did not answer /health in time")
            time.sleep(0.2)
        yield RealServer(port=port, pid=process.pid, model=tiny_model)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
