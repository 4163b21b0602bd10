"""What the web side may do to a server: record the user's intent and wake the supervisor.

These functions never spawn, signal or wait on a process; the supervisor acts on what they write.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from accounts.permissions import may_act
from audit.models import AuditKind
from audit.services import audit_record
from core.wakeup import wake_supervisor
from profiles.models import ServerProfile
from profiles.services import profile_can_use
from servers.models import DesiredState, Server, ServerEvent, ServerState
from servers.states import BUSY


class ServerActionRefused(Exception):
    """The action makes no sense in the server's current state; the message says why, politely."""


class ServerOperationRefused(PermissionDenied):
    """The person may not stop or restart this server (a 403 when it reaches a view)."""


def server_can_operate(*, user: User, profile: ServerProfile) -> bool:
    """Whether `user` may stop or restart the server of `profile`: the profile's owner, or
    whoever may operate every server. (Starting is open to everyone who may use the profile.)"""
    return may_act(user, perm="servers.operate_any_server", owner_id=profile.owner_id)


def _require_operate(profile: ServerProfile, by: User | None, verb: str) -> None:
    if by is not None and not server_can_operate(user=by, profile=profile):
        raise ServerOperationRefused(
            f"Only the owner of “{profile.name}” or an administrator can {verb} its server (you can start it)."
        )


def server_for(profile: ServerProfile) -> Server:
    """The profile's server row, locked until the transaction ends (call inside one): concurrent
    Start/Stop/Restart requests (gunicorn workers, other nodes) take turns, each reading what the
    one before wrote, instead of all acting on the same old state. (A no-op on SQLite, whose
    IMMEDIATE transactions already take turns.)"""
    Server.objects.get_or_create(profile=profile)
    return Server.objects.select_for_update().get(profile=profile)


def _record_intent(server: Server, *, action: str, by: User | None, cause: str = "user", **desired: object) -> Server:
    """Write the web side's columns, log the user's action, and wake the supervisor once committed."""
    Server.objects.filter(pk=server.pk).update(**desired)
    ServerEvent.objects.create(server=server, kind=ServerEvent.Kind.ACTION, action=action, by=by, cause=cause)
    audit_record(kind=AuditKind.SERVER, action=action, subject=server.profile.name, by=by, profile_id=server.profile_id)
    node = server.profile.node.name  # the supervisor that acts may be on another machine
    transaction.on_commit(lambda: wake_supervisor(node=node))
    server.refresh_from_db()
    return server


@transaction.atomic
def server_start(*, profile: ServerProfile, by: User | None, cause: str = "user") -> Server:
    """Ask for the server to run. Starting a `fatal` server counts as the user's say-so to retry,
    except from the gateway (cause "gateway"): a request never restarts a fatal server. A start by
    the gateway marks the run as on demand: it may later be stopped when idle or to make room."""
    if by is not None and not profile_can_use(user=by, profile=profile):
        raise ServerOperationRefused(f"You may not start “{profile.name}”.")
    server = server_for(profile)
    if server.desired_state == DesiredState.RUNNING and server.state in BUSY:
        raise ServerActionRefused(f"{profile.name} is already {server.get_state_display().lower()}.")
    if server.desired_state == DesiredState.RUNNING and server.state == ServerState.STOPPED:
        raise ServerActionRefused(f"{profile.name} is already asked to start; the supervisor starts it shortly.")
    updates: dict[str, object] = {"desired_state": DesiredState.RUNNING, "started_on_demand": cause == "gateway"}
    if server.state == ServerState.FATAL:
        if cause == "gateway":
            raise ServerActionRefused(f"{profile.name} is fatal: a person must fix it and press Start.")
        updates["restart_requested"] = F("restart_requested") + 1
    return _record_intent(server, action="start", by=by, cause=cause, **updates)


@transaction.atomic
def server_stop(*, profile: ServerProfile, by: User | None) -> Server:
    _require_operate(profile, by, "stop")
    server = server_for(profile)
    if server.desired_state == DesiredState.STOPPED and server.state == ServerState.STOPPED:
        raise ServerActionRefused(f"{profile.name} is not running, so there is nothing to stop.")
    return _record_intent(server, action="stop", by=by, desired_state=DesiredState.STOPPED)


@transaction.atomic
def server_restart(*, profile: ServerProfile, by: User | None) -> Server:
    """Stop and start again (or just start, if it was not running)."""
    _require_operate(profile, by, "restart")
    server = server_for(profile)
    return _record_intent(
        server,
        action="restart",
        by=by,
        desired_state=DesiredState.RUNNING,
        restart_requested=F("restart_requested") + 1,
    )


def server_use_begin(*, profile: ServerProfile) -> None:
    """A /v1/ request is being answered by this server: it is in use until `server_use_end`."""
    Server.objects.filter(profile=profile).update(in_flight=F("in_flight") + 1, last_used_at=timezone.now())


def server_use_still(*, profile: ServerProfile) -> None:
    """A request is still being answered (a long stream): the server was used just now."""
    Server.objects.filter(profile=profile, in_flight__gt=0).update(last_used_at=timezone.now())


def server_use_end(*, profile: ServerProfile) -> None:
    """The request ended (answered, failed, or its client left): idle time counts from now."""
    Server.objects.filter(profile=profile, in_flight__gt=0).update(
        in_flight=F("in_flight") - 1, last_used_at=timezone.now()
    )
