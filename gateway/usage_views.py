"""The Usage page: own usage for members, everyone's for administrators; CSV export."""

from __future__ import annotations

import csv
from datetime import timedelta

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.models import User
from accounts.types import AuthedRequest
from gateway.forms import UsageQuery
from gateway.limits.standing import standings_all, standings_of
from gateway.usage import CSV_COLUMNS, PERIODS, usage_csv_rows, usage_summarise, usage_visible


def usage(request: AuthedRequest) -> HttpResponse:
    query = UsageQuery(request.GET)
    query.is_valid()  # each bad value falls back to its default (cleaned_data keeps the good ones), never a 500
    days = str(query.cleaned_data.get("days") or 7)
    chosen = query.cleaned_data.get("user") if request.user.is_admin else None
    records = usage_visible(viewer=request.user, since=timezone.now() - timedelta(days=int(days)), user_id=chosen)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="usage-{timezone.localdate():%Y-%m-%d}.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(usage_csv_rows(records))
        return response
    own = standings_of(request.user)
    if request.user.is_admin and chosen != request.user.pk:
        person = User.objects.filter(pk=chosen).first() if chosen else None
        standings = standings_of(person) if person else standings_all() if not chosen else []
    else:
        standings = own
    context = {
        "section": "usage",
        "standings": standings,
        "own_standings": own,
        "summary": usage_summarise(records, days=int(days), with_users=request.user.is_admin and chosen is None),
        "days": days,
        "periods": PERIODS.items(),
        "users": User.objects.order_by("email") if request.user.is_admin else None,
        "chosen_user": chosen,
    }
    return render(request, "gateway/usage.html", context)
