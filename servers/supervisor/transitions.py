"""The one choke point for state changes: checks the move is allowed and writes a ServerEvent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import AuditKind
from audit.services import audit_record
from core.changes import changes_bump
from core.wakeup import wake_watchers
from servers.models import Server, ServerEvent
from servers.states import State, is_allowed


class IllegalTransition(Exception):
    pass


def transition(
    server: Server,
    new_state: State,
    *,
    cause: str,
    message: str = "",
    exit_code: int | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> None:
    """Move `server` to `new_state`, saving only the supervisor's columns (`state` plus `fields`),
    and record why. Refuses moves the state table does not allow."""
    current = State(server.state)
    if not is_allowed(current, new_state):
        raise IllegalTransition(f"{server.profile.name}: {current} -> {new_state} is not allowed")
    at = at or timezone.now()
    updates: dict[str, Any] = {"state": new_state.value, "state_changed_at": at, **fields}
    with transaction.atomic():
        Server.objects.filter(pk=server.pk).update(**updates)
        changes_bump()  # the gateway answers from memory whether and where a server answers
        ServerEvent.objects.create(
            server=server,
            kind=ServerEvent.Kind.TRANSITION,
            from_state=current.value,
            to_state=new_state.value,
            cause=cause,
            message=message,
            exit_code=exit_code,
        )
        audit_record(
            kind=AuditKind.SERVER,
            action=f"{current.value} → {new_state.value}",
            subject=server.profile.name,
            profile_id=server.profile_id,
            message=f"{cause}: {message}" if message else cause,
        )
    for name, value in updates.items():
        setattr(server, name, value)
    wake_watchers()  # a gateway request waiting for this server reads it again now


def server_note(server: Server, *, cause: str, message: str) -> None:
    """An event that is not a state change (adoption, a cleared PID, a rotated log)."""
    ServerEvent.objects.create(server=server, kind=ServerEvent.Kind.NOTE, cause=cause, message=message)
    audit_record(
        kind=AuditKind.SERVER,
        action=f"note: {cause}",
        subject=server.profile.name,
        profile_id=server.profile_id,
        message=message,
    )


def save_fields(server: Server, **fields: Any) -> None:
    """Save supervisor columns without a state change."""
    Server.objects.filter(pk=server.pk).update(**fields)
    for name, value in fields.items():
        setattr(server, name, value)
