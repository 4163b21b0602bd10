"""Rows as the supervisor would write them, for tests and the dashboard benchmark."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerSample, ServerState


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
