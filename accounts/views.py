from __future__ import annotations

from datetime import datetime
from typing import Any

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator

from accounts.backends import axes_client_ip, axes_username
from accounts.forms import LoginForm, RegistrationForm
from accounts.middleware import public
from accounts.models import UserStatus
from accounts.services import user_register
from accounts.types import AuthedRequest


@public
def register(request: HttpRequest) -> HttpResponse:
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_register(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        if user is not None and user.status == UserStatus.APPROVED:
            auth_login(request, user, backend="accounts.backends.EmailBackend")
            messages.success(request, "Welcome! Your account is the administrator of this MLX Manager.")
            return redirect("servers:dashboard")
        return redirect("accounts:pending")
    return render(request, "accounts/register.html", {"form": form})


@method_decorator(public, name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = False


@public
def pending(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/pending.html")


@public
def lockout(request: HttpRequest, credentials: Any = None, *args: Any, **kwargs: Any) -> HttpResponse:
    """django-axes calls this when an account or address has failed too often."""
    form = LoginForm(request, data=request.POST or None)
    form.errors.clear()
    return render(
        request,
        "accounts/login.html",
        {"form": form, "locked_out": True, "locked_until": lockout_ends(request)},
        status=429,
    )


def lockout_ends(request: HttpRequest) -> datetime | None:
    """When the lock on this account from this address lifts: its last failure plus the cool-off."""
    attempt = (
        AccessAttempt.objects.filter(username=axes_username(request), ip_address=axes_client_ip(request))
        .order_by("-attempt_time")
        .first()
    )
    cool_off = get_cool_off(request)
    if attempt is None or cool_off is None:
        return None
    return attempt.attempt_time + cool_off


def account(request: AuthedRequest) -> HttpResponse:
    """The signed-in user's own page: who they are, and a password change that keeps them in."""
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        messages.success(request, "Your password has been changed.")
        return redirect("accounts:account")
    return render(request, "accounts/account.html", {"form": form})
