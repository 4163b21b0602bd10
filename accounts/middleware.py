"""Default deny: every view needs an approved login unless it is marked with `@public`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import UserStatus

DISABLED_MESSAGE = "Your account is disabled. Ask an administrator to re-enable it."


def public(view_func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view as open to anyone. Only login, register, the pending page and /healthz are.

    Django's own `login_not_required` (e.g. on the admin's login view) is not enough: the
    middleware honours this marker alone, so every exemption is one of ours and explicit."""
    view_func.mlxm_public = True  # type: ignore[attr-defined]
    view_func.login_required = False  # type: ignore[attr-defined]
    return view_func


def is_public(view_func: Callable[..., Any]) -> bool:
    return bool(getattr(view_func, "mlxm_public", False))


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that also works for htmx requests: the whole page goes, not a fragment."""
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    return redirect(url)


class ApprovedLoginRequiredMiddleware(LoginRequiredMiddleware):
    def get_login_url(self, view_func: Callable[..., Any]) -> str:
        """Always our login page, also for the Django admin's views (which name their own):
        one login form, with the pending/disabled messages and the brute-force lockout."""
        return str(resolve_url(settings.LOGIN_URL))

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if is_public(view_func):
            return None
        user = request.user
        if not user.is_authenticated:
            login_url = self.get_login_url(view_func)
            htmx = getattr(request, "htmx", None)
            if htmx:
                # Come back to the page the fragment was on, not to the fragment itself.
                back_to = htmx.current_url_abs_path or request.get_full_path()
                return HttpResponseClientRedirect(redirect_to_login(back_to, login_url)["Location"])
            return redirect_to_login(request.get_full_path(), login_url)
        status = getattr(user, "status", None)
        if status == UserStatus.PENDING:
            return _redirect(request, reverse("accounts:pending"))
        if status != UserStatus.APPROVED:
            logout(request)
            messages.error(request, DISABLED_MESSAGE)
            return _redirect(request, self.get_login_url(view_func))
        return None
