"""The one writer of the audit trail. It sits below every other app (accounts too, whose services
write here), so it names the person by the few attributes it needs instead of importing User."""

from __future__ import annotations

from typing import Any, Protocol

from audit.models import AuditKind, AuditRecord


class Actor(Protocol):
    @property
    def pk(self) -> Any: ...

    @property
    def email(self) -> str: ...


def audit_record(
    *,
    kind: AuditKind,
    action: str,
    subject: object,
    by: Actor | None = None,
    profile_id: int | None = None,
    message: str = "",
) -> AuditRecord:
    """Append one record. `by=None` means the supervisor (or the system) acted on its own."""
    return AuditRecord.objects.create(
        kind=kind,
        action=action[:64],
        subject=str(subject)[:255],
        actor_id=by.pk if by is not None else None,
        actor_email=by.email if by is not None else "",
        profile_id=profile_id,
        message=message,
    )
