"""The one writer of the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit.models import AuditKind, AuditRecord

if TYPE_CHECKING:
    from accounts.models import User


def audit_record(
    *,
    kind: AuditKind,
    action: str,
    subject: object,
    by: User | None = None,
    profile_id: int | None = None,
    message: str = "",
) -> AuditRecord:
    """Append one record. `by=None` means the supervisor (or the system) acted on its own."""
    return AuditRecord.objects.create(
        kind=kind,
        action=action[:64],
        subject=str(subject)[:255],
        actor=by if by is not None and by.pk is not None else None,
        actor_email=by.email if by is not None else "",
        profile_id=profile_id,
        message=message,
    )
