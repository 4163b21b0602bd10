from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from accounts.models import User


class AuthedRequest(HttpRequest):
    """A request that the default-deny middleware has let through: `user` is an approved User."""

    user: User  # type: ignore[assignment]
    htmx: HtmxDetails
