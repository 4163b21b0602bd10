"""The audit trail's pages: everything for administrators (`/audit/`), a member's own profiles'
records (`/activity/`), filtered, paged, and as CSV. The records are written by audit.services from
every app below; these pages read them at the top layer (mlxmanager/tests/test_layers.py)."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponseBase, HttpResponseNotAllowed, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.models import User
from accounts.types import AuthedRequest
from audit.forms import AuditFilterForm
from audit.models import AuditRecord
from core.formatting import csv_cell
from profiles.models import ServerProfile

PAGE_SIZE = 50
CSV_COLUMNS = ("when", "who", "kind", "action", "subject", "message")


def _records_for(user: User) -> QuerySet[AuditRecord]:
    """Everything for an administrator; a member's own profiles' records otherwise."""
    records = AuditRecord.objects.all()
    if user.is_admin:
        return records
    return records.filter(profile_id__in=ServerProfile.objects.filter(created_by=user).values("pk"))


def _render_audit(request: AuthedRequest, *, mine: bool) -> HttpResponseBase:
    scope = _records_for(request.user)
    form = AuditFilterForm(request.GET, records=scope)
    records = form.apply(scope) if form.is_valid() else scope.none()
    if request.GET.get("format") == "csv":
        return _csv_response(records)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return render(
        request,
        "audit/audit.html",
        {"form": form, "page": page, "query": query.urlencode(), "mine": mine, "section": "audit"},
    )


def audit(request: AuthedRequest) -> HttpResponseBase:
    if not request.user.is_admin:  # before the method check: a member learns nothing here
        raise PermissionDenied
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    return _render_audit(request, mine=False)


@require_GET
def activity(request: AuthedRequest) -> HttpResponseBase:
    """A member's view of the trail: the events of the profiles they created."""
    return _render_audit(request, mine=True)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(records: QuerySet[AuditRecord]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for record in records.iterator():
        cells = (record.created_at.isoformat(), record.who, record.kind, record.action, record.subject, record.message)
        yield writer.writerow([csv_cell(cell) for cell in cells])


def _csv_response(records: QuerySet[AuditRecord]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_csv_rows(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="mlx-manager-audit.csv"'
    return response
