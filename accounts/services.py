"""Writes to accounts: registration and the administrators' actions.

Every change that could take away administrator rights goes through `_guard_last_admin` inside a
transaction that holds the write lock, so that no sequence of actions, even simultaneous ones by
two administrators, leaves the installation without an approved administrator."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.utils import timezone

from accounts.limits import LimitSet
from accounts.models import GRANTABLE_RIGHTS, User, UserLimits, UserStatus, canonical_email
from audit.models import AuditKind
from audit.services import audit_record


class AccountsError(Exception):
    """A refused change to an account; `str(error)` is the message for the person who asked."""


class UnknownPermissionError(AccountsError):
    def __init__(self, permission: str) -> None:
        super().__init__(
            f"“{permission}” is not a permission that can be granted; one of: {', '.join(GRANTABLE_RIGHTS)}."
        )


class LastAdminError(AccountsError):
    def __init__(self) -> None:
        super().__init__("This is the last active administrator: make another account an administrator first.")


def _lock_users() -> None:
    """Serialize writers to the user table for the rest of the transaction. SQLite transactions
    are IMMEDIATE (settings), so they hold the write lock already; PostgreSQL needs a table lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {User._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")


def _active_admins() -> Iterable[int]:
    return User.objects.filter(status=UserStatus.APPROVED, is_staff=True).values_list("pk", flat=True)


def user_guard_last_admin(*, losing: Iterable[User]) -> None:
    """Raise `LastAdminError` if the accounts in `losing` (about to be disabled, demoted or
    deleted) are all the active administrators there are."""
    losing_pks = {user.pk for user in losing if user.pk is not None}
    admins = set(_active_admins())
    if admins and admins <= losing_pks:
        raise LastAdminError


@transaction.atomic
def user_register(*, email: str, password: str) -> User | None:
    """Create an account. The very first one becomes an approved administrator (superuser);
    every later one is pending. The lock makes two simultaneous first registrations
    serialize, so only one of them can see an empty table.

    An address that already has an account (in any case) creates nothing and returns None; the
    caller answers exactly as for a new pending account, so registration cannot be used to learn
    who has an account. The password is hashed anyway, so the answer takes as long."""
    email = canonical_email(email)
    _lock_users()
    if User.objects.filter(email__iexact=email).exists():
        make_password(password)
        return None
    if not User.objects.exists():
        user = User.objects.create_superuser(email=email, password=password)
        audit_record(
            kind=AuditKind.USER, action="register", subject=email, by=user, message="the first account: administrator"
        )
        return user
    user = User.objects.create_user(email=email, password=password, status=UserStatus.PENDING)
    audit_record(kind=AuditKind.USER, action="register", subject=email, by=user, message="waits for approval")
    return user


@transaction.atomic
def user_approve(*, user: User, by: User) -> None:
    """Let a pending (or disabled) account in; records who approved it and when."""
    if user.status == UserStatus.APPROVED:
        return  # approving twice keeps the first approval's who and when
    user.status = UserStatus.APPROVED
    user.approved_at = timezone.now()
    user.approved_by = by
    user.save(update_fields=["status", "approved_at", "approved_by"])
    audit_record(kind=AuditKind.USER, action="approve", subject=user.email, by=by)


@transaction.atomic
def user_enable(*, user: User, by: User) -> None:
    """Re-enable a disabled account. The first approval (who and when) is kept."""
    if user.approved_at is None:
        user_approve(user=user, by=by)
        return
    user.status = UserStatus.APPROVED
    user.save(update_fields=["status"])
    audit_record(kind=AuditKind.USER, action="enable", subject=user.email, by=by)


@transaction.atomic
def user_disable(*, user: User, by: User) -> None:
    """Shut an account out; the middleware ends its sessions on their next request."""
    _lock_users()
    user_guard_last_admin(losing=[user])
    user.status = UserStatus.DISABLED
    user.save(update_fields=["status"])
    audit_record(kind=AuditKind.USER, action="disable", subject=user.email, by=by)


@transaction.atomic
def user_set_admin(*, user: User, is_admin: bool, by: User) -> None:
    """Grant or revoke administrator rights (staff and superuser, so Django admin works too)."""
    _lock_users()
    if not is_admin:
        user_guard_last_admin(losing=[user])
    user.is_staff = is_admin
    user.is_superuser = is_admin
    user.save(update_fields=["is_staff", "is_superuser"])
    audit_record(kind=AuditKind.USER, action="make admin" if is_admin else "revoke admin", subject=user.email, by=by)


def _grantable(permission: str) -> Permission:
    app_label, _, codename = permission.partition(".")
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    if permission not in GRANTABLE_RIGHTS or found is None:
        raise UnknownPermissionError(permission)
    return found


@transaction.atomic
def user_set_permission(*, user: User, permission: str, granted: bool, by: User) -> None:
    """Grant or revoke one of the grantable permissions (`app_label.codename`) to the account
    itself (a group's grant is the group's affair and stays)."""
    found = _grantable(permission)
    if granted:
        user.user_permissions.add(found)
    else:
        user.user_permissions.remove(found)
    action = "grant permission" if granted else "revoke permission"
    audit_record(kind=AuditKind.USER, action=action, subject=user.email, by=by, message=permission)


@transaction.atomic
def user_set_rights(*, user: User, rights: Collection[str], by: User) -> list[str]:
    """Make the account's own grants exactly `rights` (grantable permissions): each change is
    granted or revoked (and audited) one by one; a group's grants stay. Returns what changed."""
    unknown = [right for right in rights if right not in GRANTABLE_RIGHTS]
    if unknown:
        raise UnknownPermissionError(unknown[0])
    held = user.direct_rights
    changed = [right for right in GRANTABLE_RIGHTS if (right in rights) != (right in held)]
    for right in changed:
        user_set_permission(user=user, permission=right, granted=right in rights, by=by)
    return changed


@transaction.atomic
def user_set_password(*, user: User, password: str, by: User) -> None:
    """An administrator sets a new password; the account's existing sessions end with it."""
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(kind=AuditKind.USER, action="set password", subject=user.email, by=by)


@transaction.atomic
def user_delete(*, user: User, by: User) -> None:
    _lock_users()
    user_guard_last_admin(losing=[user])
    audit_record(kind=AuditKind.USER, action="delete", subject=user.email, by=by)
    user.delete()


@transaction.atomic
def user_save(*, user: User, by: User) -> None:
    """Save an account edited as a whole (Django admin's change form) by the rules of the other
    services: a change that would leave no active administrator is refused (LastAdminError, checked
    here under the lock, whatever the form saw), approving records who and when (a re-enabled
    account keeps its first approval, as in user_enable), and an administrator is staff and
    superuser together (as in user_set_admin)."""
    _lock_users()
    if not (user.status == UserStatus.APPROVED and user.is_staff):
        user_guard_last_admin(losing=[user])
    user.is_superuser = user.is_staff
    if user.status == UserStatus.APPROVED and user.approved_at is None:
        user.approved_at = timezone.now()
        user.approved_by = by
    user.save()
    audit_record(kind=AuditKind.USER, action="edit", subject=user.email, by=by, message=f"status {user.status}")


@transaction.atomic
def users_delete(*, users: Iterable[User], by: User) -> int:
    """Delete several accounts at once (Django admin's bulk delete); all or none."""
    users = list(users)
    _lock_users()
    user_guard_last_admin(losing=users)
    for user in users:
        audit_record(kind=AuditKind.USER, action="delete", subject=user.email, by=by)
        user.delete()
    return len(users)


@transaction.atomic
def user_limits_set(*, user: User, limits: LimitSet, by: User) -> bool:
    """Set a person's own limits (blank ones: their groups' apply); audited. True when changed."""
    row = UserLimits.objects.filter(user=user).first()
    if LimitSet.of(row) == limits:
        return False
    UserLimits.objects.update_or_create(user=user, defaults=limits.as_dict())
    audit_record(kind=AuditKind.USER, action="set limits", subject=f"{user.email}: {limits.text() or 'none'}", by=by)
    return True
