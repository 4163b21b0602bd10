"""Servers: state as the supervisor last wrote it; start/stop/restart record the intent through
servers/services.py (the supervisor acts on it), exactly as the dashboard's buttons do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from api.auth import user_of
from api.errors import ERROR_CODES, ApiError, Error
from api.profiles import get_profile
from core.web import gateway_base_url
from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.logtail import read_log
from servers.models import Server, ServerEvent
from servers.services import ServerActionRefused, server_restart, server_start, server_stop

router = Router(tags=["servers"])
EVENTS_MAX = 200


class ServerOut(Schema):
    profile_id: int
    name: str
    state: str
    desired_state: str
    pid: int | None
    port: int = Field(description="The model server's own port: internal, for the gateway and the supervisor only.")
    host: str = Field(description="The address the model server listens on: internal, like `port`.")
    base_url: str = Field(
        description="Where clients send requests: the gateway's /v1 on this app, with an API key and `model` set to "
        "`name` (never the model server's own port, which takes no key and records no usage)."
    )
    started_at: datetime | None
    state_changed_at: datetime | None
    last_error: str
    last_exit_code: int | None
    restart_count: int
    rss_bytes: int | None
    cpu_percent: float | None


class HealthOut(Schema):
    profile_id: int
    state: str
    healthy: bool
    last_health_at: datetime | None
    last_health_ms: float | None
    health_failures: int


class EventOut(Schema):
    created_at: datetime
    kind: str
    from_state: str
    to_state: str
    action: str
    by: str | None
    cause: str
    message: str
    exit_code: int | None


class LogOut(Schema):
    text: str
    offset: int
    inode: int | None
    reset: bool
    skipped: int
    missing: bool


class LogQuery(Schema):
    offset: int | None = None
    inode: int | None = None


def _server_of(profile: ServerProfile) -> Server:
    """The profile's server row; one that never ran is a stopped server not yet saved."""
    try:
        return profile.server
    except Server.DoesNotExist:
        return Server(profile=profile)


def server_out(request: HttpRequest, profile: ServerProfile) -> dict[str, Any]:
    server = _server_of(profile)
    return {
        "profile_id": profile.pk,
        "name": profile.name,
        "state": server.state,
        "desired_state": server.desired_state,
        "pid": server.pid,
        "port": profile.port,
        "host": profile.host,
        "base_url": gateway_base_url(request),
        "started_at": server.started_at,
        "state_changed_at": server.state_changed_at,
        "last_error": server.last_error,
        "last_exit_code": server.last_exit_code,
        "restart_count": server.restart_count,
        "rss_bytes": server.rss_bytes,
        "cpu_percent": server.cpu_percent,
    }


@router.get("/", response={200: list[ServerOut], ERROR_CODES: Error}, summary="List servers with their state")
def server_list(request: HttpRequest) -> Any:
    return [server_out(request, profile) for profile in ServerProfile.objects.select_related("server")]


@router.get("/{int:profile_id}", response={200: ServerOut, ERROR_CODES: Error}, summary="Get a server")
def server_get(request: HttpRequest, profile_id: int) -> Any:
    return server_out(request, get_profile(profile_id))


def _act(request: HttpRequest, profile_id: int, service: Callable[..., Server]) -> dict[str, Any]:
    profile = get_profile(profile_id)
    try:
        service(profile=profile, by=user_of(request))
    except ServerActionRefused as exc:
        raise ApiError(409, str(exc)) from None
    return server_out(request, ServerProfile.objects.select_related("server").get(pk=profile.pk))


@router.post("/{int:profile_id}/start", response={200: ServerOut, ERROR_CODES: Error}, summary="Start a server")
def server_start_view(request: HttpRequest, profile_id: int) -> Any:
    return _act(request, profile_id, server_start)


@router.post("/{int:profile_id}/stop", response={200: ServerOut, ERROR_CODES: Error}, summary="Stop a server")
def server_stop_view(request: HttpRequest, profile_id: int) -> Any:
    return _act(request, profile_id, server_stop)


@router.post("/{int:profile_id}/restart", response={200: ServerOut, ERROR_CODES: Error}, summary="Restart a server")
def server_restart_view(request: HttpRequest, profile_id: int) -> Any:
    return _act(request, profile_id, server_restart)


@router.get("/{int:profile_id}/health", response={200: HealthOut, ERROR_CODES: Error}, summary="Health checks")
def server_health(request: HttpRequest, profile_id: int) -> Any:
    """What the supervisor's last health check of the server found (it probes running servers)."""
    server = _server_of(get_profile(profile_id))
    return {
        "profile_id": profile_id,
        "state": server.state,
        "healthy": server.state == "running" and server.health_failures == 0 and server.last_health_at is not None,
        "last_health_at": server.last_health_at,
        "last_health_ms": server.last_health_ms,
        "health_failures": server.health_failures,
    }


@router.get("/{int:profile_id}/events", response={200: list[EventOut], ERROR_CODES: Error}, summary="Recent events")
def server_events(request: HttpRequest, profile_id: int, limit: int = 50) -> Any:
    profile = get_profile(profile_id)
    events = ServerEvent.objects.filter(server__profile=profile).select_related("by")[: max(1, min(limit, EVENTS_MAX))]
    return [
        {
            "created_at": event.created_at,
            "kind": event.kind,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "action": event.action,
            "by": event.by.email if event.by else None,
            "cause": event.cause,
            "message": event.message,
            "exit_code": event.exit_code,
        }
        for event in events
    ]


@router.get("/{int:profile_id}/log", response={200: LogOut, ERROR_CODES: Error}, summary="Log tail")
def server_log(request: HttpRequest, profile_id: int, query: Query[LogQuery]) -> Any:
    """The log's last lines; pass back `offset` and `inode` to get only what was written since
    (as `mlxm logs -f` does)."""
    profile = get_profile(profile_id)
    offset = query.offset if query.offset is None or query.offset >= 0 else None
    chunk = read_log(server_log_path(profile.pk), offset=offset, inode=query.inode)
    return vars(chunk)
