from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone

from accounts.forms import LimitsForm
from accounts.limits import LimitSet
from gateway.usage import PERIODS
from profiles.models import ServerProfile


class KeyForm(LimitsForm):
    """A new key. Its limits narrow its owner's (`owner_limits`): a value beyond them is refused,
    and a blank one means the owner's."""

    name = forms.CharField(
        max_length=100, error_messages={"required": "Give the key a name, such as the machine or tool that uses it."}
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Blank: never.",
        error_messages={"invalid": "Enter a date and time, e.g. 2027-01-31 18:00."},
    )
    profiles = forms.ModelMultipleChoiceField(
        queryset=ServerProfile.objects.order_by("name"),
        required=False,
        label="May use",
        help_text="None selected: every model you may use.",
        widget=forms.CheckboxSelectMultiple,
    )
    may_manage = forms.BooleanField(
        required=False,
        label="May also manage",
        help_text="Scripts with this key may also change things through /api/v1/ (profiles, servers, downloads), "
        "as you may in the pages. Unticked: it only uses models.",
    )

    def __init__(self, *args: Any, owner_limits: LimitSet | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner_limits = owner_limits or LimitSet()

    def owner_rows(self) -> list[tuple[forms.BoundField, int | None]]:
        return self.limit_rows(self.owner_limits)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name, bound in self.limits().over(self.owner_limits).items():
            if cleaned.get(name) is not None:
                self.add_error(name, f"At most {bound:,}: your own limit. A key narrows it, never widens it.")
        return cleaned

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name, such as the machine or tool that uses it.")
        return name

    def clean_expires_at(self) -> datetime | None:
        value: datetime | None = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


class UserQuery(forms.Form):
    """A query string's `user`: the one person an administrator's page shows. Read it from
    `cleaned_data` after `is_valid()`: a bad value (`²`, a number past the database's integers)
    is simply missing there, so the page shows everyone instead of a 500."""

    user = forms.IntegerField(min_value=1, max_value=2**31 - 1, required=False)


class UsageQuery(UserQuery):
    """The Usage page's query string: a period, and (for administrators) one person."""

    days = forms.TypedChoiceField(choices=[(value, value) for value in PERIODS], coerce=int, required=False)
