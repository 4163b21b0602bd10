"""Limits and budgets: where the key's owner (and each of their keys with limits of its own) stands
now, what is left today and this month; administrators may ask for one person or everyone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Field, Router, Schema

from accounts.models import LIMIT_MAX, User
from api.auth import ADMIN_ONLY_MESSAGE, user_of
from api.errors import ERROR_CODES, Error, not_found
from gateway.limits.standing import HolderStanding, standings_all, standings_of

router = Router(tags=["limits"])


class StandingOut(Schema):
    limit: str = Field(
        description="requests_per_minute, tokens_per_minute, tokens_per_day, tokens_per_month or max_concurrent"
    )
    value: int
    used: int
    remaining: int
    percent: int
    renews_at: datetime | None = Field(description="When the count starts again; null for concurrency")
    warn: bool = Field(description="A budget at 80 % or more")


class HolderOut(Schema):
    holder: str = Field(description="person or key")
    name: str = Field(description="The person's email or the key's name")
    key_id: int | None
    limits: list[StandingOut]


def _out(holders: list[HolderStanding]) -> list[dict[str, Any]]:
    return [
        {
            "holder": holder.holder,
            "name": holder.name,
            "key_id": holder.key_id,
            "limits": [
                {
                    "limit": s.limit,
                    "value": s.value,
                    "used": s.used,
                    "remaining": s.remaining,
                    "percent": s.percent,
                    "renews_at": s.renews_at,
                    "warn": s.warn,
                }
                for s in holder.standings
            ],
        }
        for holder in holders
    ]


@router.get("/", response={200: list[HolderOut], ERROR_CODES: Error}, summary="Use against limits")
def limits_list(request: HttpRequest, user: int | None = None, everyone: bool = False) -> Any:
    """Yours (the key's owner's); an administrator may pass `user` (an id) or `everyone=true`.
    Only limits that are set are listed: an empty list means no limit applies."""
    viewer = user_of(request)
    if (user is not None and user != viewer.pk) or everyone:
        if not viewer.is_admin:
            raise PermissionDenied(ADMIN_ONLY_MESSAGE)
        if everyone or user is None:
            return _out(standings_all())
        person = User.objects.filter(pk=user).first() if 1 <= user <= LIMIT_MAX else None
        if person is None:
            raise not_found("user")
        return _out(standings_of(person))
    return _out(standings_of(viewer))
