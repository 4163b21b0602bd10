"""The one rule for acting on something a person may own (a profile, its server, a download)."""

from __future__ import annotations

from accounts.models import User


def may_act(user: User, *, perm: str, owner_id: int | None) -> bool:
    """Whether `user` may act on a thing owned by `owner_id`: an approved account that is an
    administrator, holds `perm` (an `app_label.codename` granted directly or through a group),
    or owns the thing."""
    if not user.is_approved:
        return False
    return user.is_admin or user.has_perm(perm) or (owner_id is not None and owner_id == user.pk)
