"""Writes to profiles: create, update, duplicate, delete."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import User
from audit.models import AuditKind
from audit.services import audit_record
from profiles.models import ServerProfile
from profiles.ports import next_free_port
from profiles.selectors import server_status

NAME_MAX = ServerProfile._meta.get_field("name").max_length or 100
COPY_SUFFIX = re.compile(r"^(?P<base>.*?) \(copy(?: (?P<n>\d+))?\)$")


class ProfileConflict(Exception):
    """Another profile took the name or port between the form check and the write."""


class ProfileDeleteRefused(Exception):
    """The profile's server is not stopped; the message says what to do."""


def _conflict_message(fields: Mapping[str, Any]) -> str:
    return (
        f"Another profile took the name “{fields.get('name')}” or port {fields.get('port')} a moment ago; "
        "choose another one."
    )


def profile_create(*, fields: Mapping[str, Any], by: User | None) -> ServerProfile:
    """Save a new profile from validated form data."""
    profile = ServerProfile(created_by=by, **fields)
    try:
        with transaction.atomic():
            profile.save()
    except IntegrityError:
        raise ProfileConflict(_conflict_message(fields)) from None
    audit_record(kind=AuditKind.PROFILE, action="create", subject=profile.name, by=by, profile_id=profile.pk)
    return profile


def profile_update(*, profile: ServerProfile, fields: Mapping[str, Any], by: User | None = None) -> ServerProfile:
    """Write the changed fields of an existing profile. A running server keeps its old settings
    until it is restarted."""
    for name, value in fields.items():
        setattr(profile, name, value)
    try:
        with transaction.atomic():
            profile.save(update_fields=[*fields, "updated_at"])
    except IntegrityError:
        raise ProfileConflict(_conflict_message(fields)) from None
    audit_record(
        kind=AuditKind.PROFILE,
        action="edit",
        subject=profile.name,
        by=by,
        profile_id=profile.pk,
        message=", ".join(fields),
    )
    return profile


def copy_name(name: str) -> str:
    """The first free "name (copy)", "name (copy 2)", ... (case-insensitive, within the length limit).
    Copying a copy counts on from its base name instead of stacking suffixes."""
    match = COPY_SUFFIX.match(name)
    base = match.group("base") if match else name
    taken = {
        n.lower() for n in ServerProfile.objects.filter(name__istartswith=base[:50]).values_list("name", flat=True)
    }
    number = 1
    while True:
        suffix = " (copy)" if number == 1 else f" (copy {number})"
        candidate = base[: NAME_MAX - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
        number += 1


def profile_duplicate(*, profile: ServerProfile, by: User | None) -> ServerProfile:
    """A copy with a unique "(copy)" name, the next free port, and auto-start off."""
    copy = ServerProfile.objects.get(pk=profile.pk)
    copy.pk = None
    copy.id = None
    copy.name = copy_name(profile.name)
    copy.port = next_free_port()
    copy.auto_start = False
    copy.created_by = by
    try:
        with transaction.atomic():
            copy.save(force_insert=True)
    except IntegrityError:
        raise ProfileConflict(f"Could not copy “{profile.name}”: its new name or port was taken; try again.") from None
    audit_record(
        kind=AuditKind.PROFILE,
        action="duplicate",
        subject=copy.name,
        by=by,
        profile_id=copy.pk,
        message=f"copy of {profile.name}",
    )
    return copy


def profile_delete(*, profile: ServerProfile, by: User | None = None) -> None:
    """Delete a profile whose server is stopped (or failed for good). A running server would be
    left without its recipe, so that is refused."""
    with transaction.atomic():
        status = server_status(profile)
        if not status.deletable:
            raise ProfileDeleteRefused(
                f"“{profile.name}” cannot be deleted while its server is {status.label.lower()}"
                f"{' and set to run' if status.set_to_run else ''}. Stop it first."
            )
        audit_record(kind=AuditKind.PROFILE, action="delete", subject=profile.name, by=by, profile_id=profile.pk)
        profile.delete()
