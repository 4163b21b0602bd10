from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest

from accounts.models import User, UserStatus


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The pending-accounts badge for administrators."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not getattr(user, "is_admin", False):
        return {}
    # Counted only when a template shows it (full pages), not for every polled partial.
    return {"pending_user_count": functools.cache(User.objects.filter(status=UserStatus.PENDING).count)}
