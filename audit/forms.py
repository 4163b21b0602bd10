from __future__ import annotations

from typing import Any, cast

from django import forms
from django.db.models import QuerySet

from audit.models import AuditKind, AuditRecord

SUPERVISOR = "supervisor"


class AuditFilterForm(forms.Form):
    """The audit page's filters; the choices are what the records in view hold, so a filter
    can never come up empty for a reason the page does not show."""

    person = forms.ChoiceField(required=False)
    server = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False, choices=[("", "Every kind"), *AuditKind.choices])

    def __init__(self, data: Any, *, records: QuerySet[AuditRecord]) -> None:
        super().__init__(data)
        emails = (
            records.exclude(actor_email="").values_list("actor_email", flat=True).distinct().order_by("actor_email")
        )
        servers = (
            records.filter(profile_id__isnull=False).values_list("subject", flat=True).distinct().order_by("subject")
        )
        cast(forms.ChoiceField, self.fields["person"]).choices = [
            ("", "Anyone"),
            (SUPERVISOR, "The supervisor"),
            *((e, e) for e in emails),
        ]
        cast(forms.ChoiceField, self.fields["server"]).choices = [("", "Every server"), *((s, s) for s in servers)]

    def apply(self, records: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        """`records` narrowed by the valid filters (call after is_valid())."""
        data = self.cleaned_data
        if data.get("person") == SUPERVISOR:
            records = records.filter(actor_email="")
        elif data.get("person"):
            records = records.filter(actor_email=data["person"])
        if data.get("server"):
            records = records.filter(subject=data["server"], profile_id__isnull=False)
        if data.get("kind"):
            records = records.filter(kind=data["kind"])
        return records
