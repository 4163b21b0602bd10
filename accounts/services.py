"""Writes to accounts: registration and the administrators' actions."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User, UserStatus


@transaction.atomic
def user_register(*, email: str, password: str) -> User:
    """Create an account. The very first one becomes an approved administrator (superuser);
    every later one is pending. The table lock makes two simultaneous first registrations
    serialize, so only one of them can see an empty table."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {User._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
    # SQLite: transactions are IMMEDIATE (settings), so this one holds the write lock already.
    is_first = not User.objects.exists()
    if is_first:
        return User.objects.create_superuser(email=email, password=password)
    return User.objects.create_user(email=email, password=password, status=UserStatus.PENDING)


def user_approve(*, user: User, by: User) -> None:
    user.status = UserStatus.APPROVED
    user.approved_at = timezone.now()
    user.approved_by = by
    user.save(update_fields=["status", "approved_at", "approved_by"])
