from __future__ import annotations

import unicodedata
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from accounts.limits import LIMIT_FIELDS, LimitSet
from accounts.models import GRANTABLE_RIGHTS, LIMIT_MAX, User, UserStatus, canonical_email


class CanonicalEmailField(forms.EmailField):
    """NFKC before validation, so fullwidth and other compatibility letters count as plain ones."""

    def to_python(self, value: Any) -> str:
        return unicodedata.normalize("NFKC", super().to_python(value) or "")


class RegistrationForm(BaseUserCreationForm):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = ("email",)
        field_classes = {"email": CanonicalEmailField}

    def _get_validation_exclusions(self) -> set[str]:
        """No uniqueness check of the email here (the model's unique field and constraint): an
        "already exists" error would tell a stranger who has an account. `user_register` checks
        under a lock and answers the same either way."""
        return {*super()._get_validation_exclusions(), "email"}  # type: ignore[misc]

    def validate_password_for_user(self, user: Any, password_field_name: str = "password1") -> None:
        """ "Too common", "too short" and the like under the password itself: Django puts them
        under its confirmation. Not checked when the two differ (that error says enough)."""
        if not self.has_error("password2"):
            super().validate_password_for_user(user, password_field_name="password1")  # type: ignore[misc]

    def clean_email(self) -> str:
        """The canonical address (see `canonical_email`). Whether it already has an account is not
        checked here: the page must answer the same either way (accounts.services.user_register)."""
        try:
            return canonical_email(self.cleaned_data["email"])
        except ValueError:
            raise forms.ValidationError("Enter a valid email address (its domain cannot be encoded).") from None


class LoginForm(AuthenticationForm):
    """Django's login form; `username` holds the email. Says why a known account may not enter,
    but only once the password is right, so it never tells whether an email exists."""

    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Email or password is not right.",
        "pending": "Your account is awaiting approval by an administrator.",
        "disabled": "Your account is disabled. Ask an administrator to re-enable it.",
    }

    def confirm_login_allowed(self, user: Any) -> None:
        if user.status == UserStatus.PENDING:
            raise forms.ValidationError(self.error_messages["pending"], code="pending")
        if user.status == UserStatus.DISABLED:
            raise forms.ValidationError(self.error_messages["disabled"], code="disabled")


class RightsForm(forms.Form):
    """The grantable permissions an administrator gives a member on the Users page."""

    rights = forms.MultipleChoiceField(
        required=False, choices=list(GRANTABLE_RIGHTS.items()), widget=forms.CheckboxSelectMultiple
    )


LIMIT_LABELS = {
    "requests_per_minute": "Requests per minute",
    "tokens_per_minute": "Tokens per minute",
    "tokens_per_day": "Tokens per day",
    "tokens_per_month": "Tokens per month",
    "max_concurrent": "Concurrent requests",
}


def _limit_field(name: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=LIMIT_LABELS[name],
        required=False,
        min_value=1,
        max_value=LIMIT_MAX,
        error_messages={"min_value": "At least 1; blank for no limit.", "invalid": "A whole number, or blank."},
    )


class LimitsForm(forms.Form):
    """The five limits (blank: none); a person's on the Users page, a key's on the keys page."""

    requests_per_minute = _limit_field("requests_per_minute")
    tokens_per_minute = _limit_field("tokens_per_minute")
    tokens_per_day = _limit_field("tokens_per_day")
    tokens_per_month = _limit_field("tokens_per_month")
    max_concurrent = _limit_field("max_concurrent")

    def limits(self) -> LimitSet:
        """The cleaned values (call after `is_valid()`)."""
        return LimitSet(**{name: self.cleaned_data.get(name) for name in LIMIT_FIELDS})

    def limit_rows(self, bounds: LimitSet | None = None) -> list[tuple[forms.BoundField, int | None]]:
        """Each field with the bound above it (a key's owner's limit), for the template."""
        return [(self[name], getattr(bounds or LimitSet(), name)) for name in LIMIT_FIELDS]
