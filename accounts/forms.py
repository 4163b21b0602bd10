from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from accounts.models import User, UserStatus


class RegistrationForm(BaseUserCreationForm):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email: str = User.objects.normalize_email(self.cleaned_data["email"]).strip()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email


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
