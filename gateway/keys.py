"""API key secrets: how they are made, stored (SHA-256 only) and checked.

`authenticate_key` is the one check every key-authenticated door uses (`/v1/`, `/metrics`,
`/api/v1/`); it re-reads the key and its user on every call, so revoking a key or disabling,
un-approving or deleting its user takes effect on the next request here; `/v1/`'s memory of keys
(gateway/directory.py) obeys it within a second on every worker and node.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from accounts.models import UserStatus
from gateway.models import ApiKey

KEY_PREFIX = "mlxm_"
PREFIX_SHOWN = len(KEY_PREFIX) + 6
# A key's last use is written at most this often: reading a key stays a read on most requests.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def authenticate_key(raw: str) -> ApiKey | None:
    """The usable key whose secret is `raw`, with its `user` loaded; None for an unknown, revoked or
    expired key or a user who is not approved (pending, disabled; a deleted user's keys are gone)."""
    if not raw or len(raw) > 200:
        return None
    key = ApiKey.objects.select_related("user").filter(secret_hash=key_hash(raw)).first()
    now = timezone.now()
    if key is None or not key.is_usable(now) or key.user.status != UserStatus.APPROVED:
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def key_from_headers(authorization: str, x_api_key: str) -> str:
    """The secret a request carries: `Authorization: Bearer …` (OpenAI) or `x-api-key` (Anthropic)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return x_api_key.strip()
