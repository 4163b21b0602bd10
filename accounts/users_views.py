"""The administrators' users page: list, approve, disable, re-enable, grant or revoke admin,
reset a password, delete. Every action is a POST that redirects back to the list; with htmx the
row is swapped in place."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import services
from accounts.forms import LIMIT_LABELS, LimitsForm, RightsForm
from accounts.limits import LimitSet, person_limits
from accounts.models import GRANTABLE_RIGHTS, User, UserLimits, UserStatus
from accounts.types import AuthedRequest

STATUS_FILTERS = ("all", *UserStatus.values)


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """403 for anyone but an administrator (the middleware has already required an approved login)."""

    @wraps(view)
    def wrapper(request: AuthedRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_admin:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


class UsersQuery(forms.Form):
    status = forms.ChoiceField(required=False, choices=[(value, value) for value in STATUS_FILTERS])


def _users(status: str) -> QuerySet[User]:
    users = (
        User.objects.select_related("approved_by", "limits")
        .prefetch_related("user_permissions__content_type")
        .annotate(
            pending_first=Case(
                When(status=UserStatus.PENDING, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
    )
    if status != "all":
        users = users.filter(status=status)
    return users.order_by("pending_first", "email")


@admin_required
def user_list(request: AuthedRequest) -> HttpResponse:
    query = UsersQuery(request.GET)
    status = query.cleaned_data["status"] if query.is_valid() and query.cleaned_data["status"] else "all"
    context = {
        "users": _users(status),
        "status": status,
        "status_filters": [("all", "All"), *UserStatus.choices],
        "grantable_rights": GRANTABLE_RIGHTS.items(),
    }
    return render(request, "accounts/users.html", context)


def _after_action(request: AuthedRequest, user: User, done: str, error: str = "") -> HttpResponse:
    """Back to the list (keeping its filter) with a message; for htmx, just the updated row."""
    if request.htmx:
        user.refresh_from_db()
        context = {"u": user, "row_error": error, "row_done": done, "grantable_rights": GRANTABLE_RIGHTS.items()}
        return render(request, "accounts/_user_row.html", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, done)
    status = request.POST.get("status", "")
    back = reverse("users:list")
    return redirect(f"{back}?status={status}" if status in STATUS_FILTERS and status != "all" else back)


def _action(change: Callable[[User, User], None], done: str) -> Callable[[AuthedRequest, int], HttpResponse]:
    """A POST-only admin view that applies `change(user, by)` and reports the outcome."""

    @admin_required
    @require_POST
    def view(request: AuthedRequest, pk: int) -> HttpResponse:
        user = get_object_or_404(User, pk=pk)
        try:
            change(user, request.user)
        except services.AccountsError as error:
            return _after_action(request, user, "", str(error))
        return _after_action(request, user, done.format(email=user.email))

    return view


user_approve = _action(lambda user, by: services.user_approve(user=user, by=by), "{email} is approved.")
user_disable = _action(lambda user, by: services.user_disable(user=user, by=by), "{email} is disabled.")
user_enable = _action(lambda user, by: services.user_enable(user=user, by=by), "{email} is enabled again.")
user_grant_admin = _action(
    lambda user, by: services.user_set_admin(user=user, is_admin=True, by=by), "{email} is now an administrator."
)
user_revoke_admin = _action(
    lambda user, by: services.user_set_admin(user=user, is_admin=False, by=by), "{email} is no longer an administrator."
)


@admin_required
@require_POST
def user_rights(request: AuthedRequest, pk: int) -> HttpResponse:
    """Give a member exactly the ticked rights (each change audited)."""
    user = get_object_or_404(User, pk=pk)
    form = RightsForm(request.POST)
    if not form.is_valid():
        response = _after_action(request, user, "", "; ".join(str(message) for message in form.errors["rights"]))
        response.status_code = 400
        return response
    if user.is_admin:
        return _after_action(request, user, "", f"{user.email} is an administrator and holds every right already.")
    changed = services.user_set_rights(user=user, rights=form.cleaned_data["rights"], by=request.user)
    done = f"{user.email}'s rights are saved." if changed else f"{user.email}'s rights are unchanged."
    return _after_action(request, user, done)


@admin_required
def user_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    user = get_object_or_404(User, pk=pk)
    if request.method == "POST":
        try:
            services.user_delete(user=user, by=request.user)
        except services.AccountsError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"{user.email} is deleted.")
        if request.htmx:
            return HttpResponseClientRedirect(reverse("users:list"))
        return redirect("users:list")
    return render(request, "accounts/user_delete.html", {"u": user})


@admin_required
def user_password(request: AuthedRequest, pk: int) -> HttpResponse:
    """An administrator sets a new password for an account (Django's validators apply)."""
    user = get_object_or_404(User, pk=pk)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.user_set_password(user=user, password=form.cleaned_data["new_password1"], by=request.user)
        if user.pk == request.user.pk:
            update_session_auth_hash(request, user)
        messages.success(request, f"The password of {user.email} is changed.")
        return redirect("users:list")
    return render(request, "accounts/user_password.html", {"u": user, "form": form})


@admin_required
def user_limits(request: AuthedRequest, pk: int) -> HttpResponse:
    """A person's own limits (GET the form, POST saves); blank ones leave their groups' in force."""
    user = get_object_or_404(User, pk=pk)
    own = LimitSet.of(UserLimits.objects.filter(user=user).first())
    form = LimitsForm(request.POST or None, initial=own.as_dict())
    if request.method == "POST" and form.is_valid():
        changed = services.user_limits_set(user=user, limits=form.limits(), by=request.user)
        messages.success(request, f"{user.email}'s limits are {'saved' if changed else 'unchanged'}.")
        return redirect("users:list")
    context = {
        "u": user,
        "form": form,
        "effective": [(LIMIT_LABELS[name], value) for name, value in person_limits(user).as_dict().items()],
    }
    return render(request, "accounts/user_limits.html", context, status=400 if form.errors else 200)
