"""Reading the usage records: a person's own (or, for administrators, everyone's) over a period,
totals by day, model and user, and the rows for the CSV export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User
from core.formatting import csv_cell
from gateway.models import UsageRecord

PERIODS = {"1": "24 hours", "7": "7 days", "30": "30 days", "90": "90 days"}
CSV_COLUMNS = [
    "created_at", "user", "key", "model", "api", "stream", "status", "error",
    "prompt_tokens", "completion_tokens", "ttft_ms", "duration_ms", "tokens_per_second",
]  # fmt: skip


def usage_visible(*, viewer: User, since: datetime, user_id: int | None = None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(created_at__gte=since)
    if not viewer.is_admin:
        return records.filter(user=viewer)
    return records.filter(user_id=user_id) if user_id else records


def _totals(records: QuerySet[UsageRecord], group: str) -> list[dict[str, Any]]:
    return list(
        records.values(group)
        .annotate(
            requests=Count("id"),
            failed=Count("id", filter=~Q(status=200)),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            tokens_per_second=Avg("tokens_per_second"),
            ttft_ms=Avg("ttft_ms"),
        )
        .order_by(group if group == "day" else "-requests")
    )


@dataclass(frozen=True)
class UsageSummary:
    totals: dict[str, Any]
    by_day: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_user: list[dict[str, Any]]
    recent: list[UsageRecord]


def usage_summarise(records: QuerySet[UsageRecord], *, days: int, with_users: bool) -> UsageSummary:
    totals = records.aggregate(
        requests=Count("id"),
        failed=Count("id", filter=~Q(status=200)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    by_day = _fill_days(_totals(records.annotate(day=TruncDate("created_at")), "day"), days)
    peak = max((row["requests"] for row in by_day), default=0) or 1
    for row in by_day:
        row["bar"] = round(100 * row["requests"] / peak)
    return UsageSummary(
        totals=totals,
        by_day=by_day,
        by_model=_totals(records, "model_name"),
        by_user=_totals(records, "user__email") if with_users else [],
        recent=list(records.select_related("user", "api_key")[:50]),
    )


def _fill_days(rows: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """One row per day of the period, days without requests included (the chart keeps its scale)."""
    found = {row["day"]: row for row in rows}
    today = timezone.localdate()
    span = max(days, 1)
    filled = []
    for offset in range(span - 1, -1, -1):
        day: date = today - timedelta(days=offset)
        filled.append(
            found.get(day) or {"day": day, "requests": 0, "failed": 0, "prompt_tokens": None, "completion_tokens": None}
        )
    return filled


def usage_csv_rows(records: QuerySet[UsageRecord]) -> list[list[object]]:
    """The export's rows, every cell through `csv_cell`: the model name, the error and the key's
    name are what a member sent or chose, and an administrator opens the file in a spreadsheet."""
    rows: list[list[object]] = []
    for r in records.select_related("user", "api_key").order_by("created_at").iterator():
        cells = [
            r.created_at.isoformat(), r.user.email if r.user else "", r.api_key.name if r.api_key else "",
            r.model_name, r.api, r.stream, r.status, r.error, r.prompt_tokens, r.completion_tokens,
            r.ttft_ms, r.duration_ms, r.tokens_per_second,
        ]  # fmt: skip
        rows.append([csv_cell(cell) for cell in cells])
    return rows
