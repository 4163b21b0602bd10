from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.models import User


class EmailBackend(ModelBackend):
    """Email (any case) and password. Pending and disabled accounts still authenticate here so
    that the login form can say why they may not enter; the middleware keeps them out."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        if not username or not password:
            return None
        user = User.objects.filter(email__iexact=username.strip()).first()
        if user is None:
            User().set_password(password)  # same work as a real check: no timing hint
            return None
        return user if user.check_password(password) else None

    def user_can_authenticate(self, user: Any) -> bool:
        return True

    def get_user(self, user_id: int) -> User | None:  # type: ignore[override]
        return User.objects.filter(pk=user_id).first()


def axes_username(request: HttpRequest | None, credentials: dict[str, Any] | None = None) -> str | None:
    """The account name django-axes counts failures for: the email as typed in the login form
    (`username`), in lower case, so `Bob@x` and `bob@x` share one lock."""
    source: Any = credentials or (request.POST if request is not None else {})
    username = source.get("username") or source.get("email")
    return str(username).strip().lower() if username else None


def axes_client_ip(request: HttpRequest) -> str | None:
    """The address lockouts count against. Behind our TLS proxy every request comes from the proxy,
    so take the last X-Forwarded-For entry: the one the proxy appended, which a client cannot forge."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.BEHIND_TLS_PROXY and forwarded:
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")
