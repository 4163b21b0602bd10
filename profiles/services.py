"""Writes to profiles (create, update, duplicate, delete) and who may make them.

The permission rules live here so that every door (pages, JSON API, gateway) asks the same
functions: `profile_can_use`, `profile_can_manage`, `profile_unsafe_problems`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from accounts.models import User
from accounts.permissions import may_act
from audit.models import AuditKind
from audit.services import audit_record
from library.local import is_allowed_path, is_local_path
from profiles.modelinfo import NOT_ALLOWED
from profiles.models import ServerProfile
from profiles.ports import next_free_port
from profiles.selectors import server_status

NAME_MAX = ServerProfile._meta.get_field("name").max_length or 100
COPY_SUFFIX = re.compile(r"^(?P<base>.*?) \(copy(?: (?P<n>\d+))?\)$")


class ProfileConflict(Exception):
    """Another profile took the name or port between the form check and the write."""


class ProfileDeleteRefused(Exception):
    """The profile's server is not stopped; the message says what to do."""


class ProfileRefused(PermissionDenied):
    """The person may not do this to this profile (a 403 when it reaches a view)."""


UNSAFE_WHO = "Only administrators and members granted “use unsafe server options” can"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UNSAFE_FIELDS = ("trust_remote_code", "host", "model", "draft_model", "adapter_path")


def user_may_use_unsafe_options(*, user: User) -> bool:
    return user.is_admin or user.has_perm("profiles.use_unsafe_options")


def profile_can_use(*, user: User, profile: ServerProfile) -> bool:
    """Whether `user` may start this profile's server and send it requests: every approved person."""
    return user.is_approved


def profile_can_manage(*, user: User, profile: ServerProfile) -> bool:
    """Whether `user` may edit or delete this profile: its owner, or whoever may manage every profile."""
    return may_act(user, perm="profiles.manage_any_profile", owner_id=profile.owner_id)


def profile_require_manage(*, profile: ServerProfile, by: User | None, verb: str) -> None:
    """ProfileRefused unless `by` may edit or delete this profile (None: the system itself)."""
    if by is not None and not profile_can_manage(user=by, profile=profile):
        raise ProfileRefused(f"Only the owner of “{profile.name}” or an administrator can {verb} it.")


def profile_unsafe_problems(*, fields: Mapping[str, Any]) -> dict[str, str]:
    """The unsafe options among these profile values, each with the message a member sees."""
    problems: dict[str, str] = {}
    if fields.get("trust_remote_code"):
        problems["trust_remote_code"] = f"{UNSAFE_WHO} turn on trust remote code: it runs the repo's Python code."
    host = str(fields.get("host") or "127.0.0.1")
    if host not in LOOPBACK_HOSTS:
        problems["host"] = f"{UNSAFE_WHO} serve on {host}; use 127.0.0.1, localhost or ::1."
    for name in ("model", "draft_model", "adapter_path"):
        value = str(fields.get(name) or "")
        if value and is_local_path(value) and not is_allowed_path(value):
            problems[name] = NOT_ALLOWED
    return problems


def profile_refuse_unsafe(*, fields: Mapping[str, Any], by: User | None) -> None:
    """ProfileRefused naming every unsafe option among `fields`, unless `by` may use them."""
    if by is None or user_may_use_unsafe_options(user=by):
        return
    if problems := profile_unsafe_problems(fields=fields):
        raise ProfileRefused(" ".join(dict.fromkeys(problems.values())))


def _current_fields(profile: ServerProfile) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in UNSAFE_FIELDS}


def _conflict_message(fields: Mapping[str, Any]) -> str:
    return (
        f"Another profile took the name “{fields.get('name')}” or port {fields.get('port')} a moment ago; "
        "choose another one."
    )


def profile_create(*, fields: Mapping[str, Any], by: User | None) -> ServerProfile:
    """Save a new profile from validated form data; `by` owns it. Unsafe options need the permission."""
    profile_refuse_unsafe(fields=fields, by=by)
    profile = ServerProfile(created_by=by, owner=by, **fields)
    try:
        with transaction.atomic():
            profile.save()
    except IntegrityError:
        raise ProfileConflict(_conflict_message(fields)) from None
    audit_record(kind=AuditKind.PROFILE, action="create", subject=profile.name, by=by, profile_id=profile.pk)
    return profile


def _refuse_move_while_running(profile: ServerProfile, fields: Mapping[str, Any]) -> None:
    """A server belongs to the supervisor of its node: moving a profile whose server is not
    stopped would leave that process without its owner."""
    node = fields.get("node")
    saved = ServerProfile.objects.filter(pk=profile.pk).select_related("node").first()  # the form has set it already
    if node is None or saved is None or node.pk == saved.node_id or server_status(saved).stopped:
        return
    raise ProfileConflict(
        f"“{saved.name}” has a server on {saved.node.name} that is not stopped: "
        f"stop it before moving the profile to {node.name}."
    )


def profile_update(*, profile: ServerProfile, fields: Mapping[str, Any], by: User | None) -> ServerProfile:
    """Write the changed fields of an existing profile. A running server keeps its old settings
    until it is restarted. The profile as it would be saved is checked, so a member cannot keep
    an unsafe option that someone else set by leaving it alone."""
    profile_require_manage(profile=profile, by=by, verb="change")
    profile_refuse_unsafe(fields={**_current_fields(profile), **fields}, by=by)
    _refuse_move_while_running(profile, fields)
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
    """A copy with a unique "(copy)" name, the next free port, and auto-start off, owned by `by`."""
    profile_refuse_unsafe(fields=_current_fields(profile), by=by)
    copy = ServerProfile.objects.get(pk=profile.pk)
    copy.pk = None
    copy.id = None
    copy.name = copy_name(profile.name)
    copy.port = next_free_port()
    copy.auto_start = False
    copy.created_by = by
    copy.owner = by
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


def profile_delete(*, profile: ServerProfile, by: User | None) -> None:
    """Delete a profile whose server is stopped (or failed for good). A running server would be
    left without its recipe, so that is refused."""
    profile_require_manage(profile=profile, by=by, verb="delete")
    with transaction.atomic():
        status = server_status(profile)
        if not status.deletable:
            raise ProfileDeleteRefused(
                f"“{profile.name}” cannot be deleted while its server is {status.label.lower()}"
                f"{' and set to run' if status.set_to_run else ''}. Stop it first."
            )
        audit_record(kind=AuditKind.PROFILE, action="delete", subject=profile.name, by=by, profile_id=profile.pk)
        profile.delete()
