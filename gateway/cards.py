"""The gateway's section on the dashboard cards: requests in the last hour, the last tokens per
second, and a "Use it" panel (base URL, model name, snippets for the OpenAI and Anthropic clients
and curl, loaded when it is opened: gateway.keys_views.use_it). Sent in answer to
`servers.signals.cards_shown` (gateway/receivers.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from gateway.limits.queue import queue_views
from gateway.models import UsageRecord
from profiles.models import ServerProfile
from servers.dashboard.cards import CardExtra

TEMPLATE = "gateway/_card_usage.html"
RECENT = timedelta(hours=1)
LAST_SPEED_WINDOW = timedelta(days=1)
CACHE_SECONDS = 120  # a safety bound: the key below changes first


def card_usage(profiles: Sequence[ServerProfile]) -> dict[int, CardExtra]:
    ids = [p.pk for p in profiles]
    if not ids:
        return {}
    figures = _usage_figures(ids)
    queues = queue_views()  # this node's fair queue, read at each poll (a local file, no cache)
    return {
        p.pk: CardExtra(
            TEMPLATE,
            {
                "profile_id": p.pk,
                "queue": queues.get(p.pk),
                **figures.get(p.pk, {"requests_hour": 0, "last_speed": None}),
            },
        )
        for p in profiles
    }


def _usage_figures(ids: list[int]) -> dict[int, dict[str, float | int | None]]:
    """Requests in the last hour and the last speed per profile, computed again only when a request
    was recorded (records are only added: the newest id says so, in any worker) or a minute passed
    (requests leave the hour): the dashboard polls every few seconds and most polls change nothing."""
    now = timezone.now()
    newest = UsageRecord.objects.order_by("-pk").values_list("pk", flat=True).first()
    key = f"gateway:card-usage:{newest}:{int(now.timestamp()) // 60}:{','.join(map(str, ids))}"
    figures: dict[int, dict[str, float | int | None]] | None = cache.get(key)
    if figures is None:
        figures = _usage_figures_now(ids, now)
        cache.set(key, figures, CACHE_SECONDS)
    return figures


def _usage_figures_now(ids: list[int], now: datetime) -> dict[int, dict[str, float | int | None]]:
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
    return {pk: {"requests_hour": counts.get(pk, 0), "last_speed": speeds.get(pk)} for pk in ids}
