"""The gateway's section on the dashboard cards: requests in the last hour, the last tokens per
second, and a "Use it" panel (base URL, model name, snippets for the OpenAI and Anthropic clients
and curl). Registered with `servers.dashboard.CARD_EXTRA_PROVIDERS` when the app is ready."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from gateway.models import UsageRecord
from profiles.models import ServerProfile
from servers.dashboard import CardExtra

TEMPLATE = "gateway/_card_usage.html"
RECENT = timedelta(hours=1)
LAST_SPEED_WINDOW = timedelta(days=1)


def card_usage(profiles: Sequence[ServerProfile]) -> dict[int, CardExtra]:
    ids = [p.pk for p in profiles]
    if not ids:
        return {}
    now = timezone.now()
    counts = dict(
        UsageRecord.objects.filter(profile_id__in=ids, created_at__gte=now - RECENT)
        .values_list("profile_id")
        .annotate(n=Count("id"))
        .values_list("profile_id", "n")
    )
    speeds: dict[int, float] = {}
    recent_speeds = (
        UsageRecord.objects.filter(
            profile_id__in=ids, created_at__gte=now - LAST_SPEED_WINDOW, tokens_per_second__isnull=False
        )
        .order_by("-created_at")
        .values_list("profile_id", "tokens_per_second")[:500]
    )
    for profile_id, speed in recent_speeds:
        if speed is not None:
            speeds.setdefault(profile_id, speed)
    return {
        p.pk: CardExtra(
            TEMPLATE, {"model": p.name, "requests_hour": counts.get(p.pk, 0), "last_speed": speeds.get(p.pk)}
        )
        for p in profiles
    }
