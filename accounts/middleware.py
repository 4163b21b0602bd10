"""Default deny: every view needs an approved login unless it is marked with `@public`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import UserStatus


def public(view_func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view as open to anyone (login, register, pending page, /healthz)."""
    view_func.login_required = False  # type: ignore[attr-defined]
    return view_func


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that also works for htmx requests: the whole page goes, not a fragment."""
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    from django.shortcuts import redirect

    return redirect(url)


class ApprovedLoginRequiredMiddleware(LoginRequiredMiddleware):
    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True):
            return None
        user = request.user
        if not user.is_authenticated:
            if getattr(request, "htmx", False):
                return HttpResponseClientRedirect(resolve_url(self.get_login_url(view_func)))
            return redirect_to_login(request.get_full_path(), self.get_login_url(view_func))
        status = getattr(user, "status", None)
        if status == UserStatus.PENDING:
            return _redirect(request, reverse("accounts:pending"))
        if status != UserStatus.APPROVED:
            logout(request)
            messages.error(request, "Your account is disabled. Ask an administrator to re-enable it.")
            return _redirect(request, resolve_url(self.get_login_url(view_func)))
        return None
