"""Who may call `/api/v1/`: a personal API key (`Authorization: Bearer mlxm_…`), nothing else.

The rule for keys, in one place: a key limited to using models (the default) may read (GET) every
endpoint its user may read; anything that changes something needs a key that may also manage.
What the *user* may do is then the services' (and, for users, the administrators') decision.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.security import HttpBearer

from accounts.models import User
from gateway.keys import authenticate_key
from gateway.models import ApiKey

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_ONLY_MESSAGE = "Only administrators may do this."
USING_ONLY_MESSAGE = "This API key may only use models; create a key that may also manage to change things."


class ApiKeyAuth(HttpBearer):
    """Bearer API keys; sets `request.user` to the key's user so that services get `by=`."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = authenticate_key(token)
        if key is None:
            return None
        request.user = key.user
        if request.method not in READ_METHODS and not key.may_manage:
            raise PermissionDenied(USING_ONLY_MESSAGE)
        return key


class AdminKeyAuth(ApiKeyAuth):
    """An administrator's key: checked before the body is read, so others get 403 whatever they send."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = super().authenticate(request, token)
        if key is not None and not key.user.is_admin:
            raise PermissionDenied(ADMIN_ONLY_MESSAGE)
        return key


def user_of(request: HttpRequest) -> User:
    """The key's user (set by `ApiKeyAuth`, which every operation has)."""
    user: Any = request.user
    assert isinstance(user, User)
    return user
