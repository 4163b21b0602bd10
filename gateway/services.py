"""Writes of the gateway: API keys made and revoked, usage recorded and pruned."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.limits import LimitSet
from accounts.models import User
from audit.models import AuditKind
from audit.services import audit_record
from gateway.keys import PREFIX_SHOWN, key_hash, new_secret
from gateway.models import ApiKey, SeenForward, UsageRecord
from profiles.models import ServerProfile


class KeyPermissionError(PermissionError):
    """The person may not act on that key."""


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once, never stored


def key_create(
    *,
    user: User,
    name: str,
    expires_at: datetime | None = None,
    profiles: Iterable[ServerProfile] = (),
    may_manage: bool = False,
    limits: LimitSet | None = None,
) -> NewKey:
    """A new key for `user`. `may_manage` lets it change things through `/api/v1/`; it never
    grants more than the person may do in the pages (the API's services check that). `limits`
    narrow the person's (the form refuses wider ones; wider ones would not count anyway)."""
    secret = new_secret()
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=secret[:PREFIX_SHOWN],
        secret_hash=key_hash(secret),
        expires_at=expires_at,
        may_manage=may_manage,
        **(limits or LimitSet()).as_dict(),
    )
    key.profiles.set(list(profiles))
    scope = " (may manage)" if may_manage else ""
    if limits:
        scope += f" limited to {limits.text()}"
    audit_record(kind=AuditKind.KEY, action="create", subject=f"{key}{scope} of {user.email}", by=user)
    return NewKey(key=key, secret=secret)


def key_revoke(*, key: ApiKey, by: User) -> None:
    """The owner or an administrator revokes a key; it stops working on the next request."""
    if key.user_id != by.pk and not by.is_admin:
        raise KeyPermissionError("Only the key's owner or an administrator may revoke it.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(kind=AuditKind.KEY, action="revoke", subject=f"{key} of {key.user.email}", by=by)


def usage_prune(*, now: datetime) -> int:
    """Delete the usage records older than MLXM_USAGE_RETENTION_DAYS (one indexed DELETE). Run by
    the supervisor once a minute (gateway/receivers.py), not on the gateway's request path."""
    cutoff = now - timedelta(days=settings.MLXM_USAGE_RETENTION_DAYS)
    deleted, _ = UsageRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def usage_record(**fields: Any) -> UsageRecord:
    """One INSERT per gateway request, called once the answer is done: it never deletes (the
    supervisor prunes the old records, usage_prune)."""
    return UsageRecord.objects.create(**fields)


# Seconds a forwarded request's signature stays valid: room for clocks that disagree a little. Within
# it, a signature is accepted once (the nonce makes two identical requests in the same second sign
# differently). Checked in gateway.forward.
SIGNATURE_MAX_AGE = 300
# A signature's time may be that far behind or ahead of this node's clock (the sending node's may
# run fast), so one seen now may still be valid twice that long from now: kept that long, a replay
# is refused for as long as its age would let it in.
SEEN_FORWARD_KEPT = timedelta(seconds=2 * SIGNATURE_MAX_AGE)


def forward_first_seen(*, signature: str, now: datetime) -> bool:
    """True the first time this node sees a forwarded request's signature, False for a replay of
    it. One INSERT: the old signatures are forgotten by the supervisor (forward_seen_prune)."""
    try:
        with transaction.atomic():
            SeenForward.objects.create(signature=signature, seen_at=now)
    except IntegrityError:
        return False
    return True


def forward_seen_prune(*, now: datetime) -> int:
    """Forget the signatures seen longer ago than SEEN_FORWARD_KEPT: by then their age refuses
    them anyway. Run by the supervisor once a minute (gateway/receivers.py)."""
    deleted, _ = SeenForward.objects.filter(seen_at__lt=now - SEEN_FORWARD_KEPT).delete()
    return deleted
