"""Users (administrators only): the users page's actions through accounts/services.py, so the
last-administrator guard and the approval records hold here too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from accounts import services
from accounts.models import GRANTABLE_RIGHTS, User, UserStatus
from accounts.users_views import STATUS_FILTERS, _users
from api.auth import AdminKeyAuth, user_of
from api.errors import ERROR_CODES, ApiError, Error, not_found

router = Router(tags=["users"], auth=AdminKeyAuth())


class UserOut(Schema):
    id: int
    email: str
    status: str
    is_admin: bool
    date_joined: datetime | None = None
    approved_at: datetime | None
    permissions: list[str]

    @staticmethod
    def resolve_permissions(user: User) -> list[str]:
        return sorted(user.get_user_permissions())

    @staticmethod
    def resolve_is_admin(user: User) -> bool:
        return user.is_admin


class PendingOut(Schema):
    pending: int


class PasswordIn(Schema):
    password: str


def _user(user_id: int) -> User:
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise not_found("user")
    return user


@router.get("/", response={200: list[UserOut], ERROR_CODES: Error}, summary="List users")
def user_list(request: HttpRequest, status: str = "all") -> Any:
    if status not in STATUS_FILTERS:
        raise ApiError(400, f"status must be one of: {', '.join(STATUS_FILTERS)}.", field="status")
    return list(_users(status))


@router.get("/pending-count", response={200: PendingOut, ERROR_CODES: Error}, summary="How many wait for approval")
def user_pending_count(request: HttpRequest) -> Any:
    return {"pending": User.objects.filter(status=UserStatus.PENDING).count()}


@router.get("/{int:user_id}", response={200: UserOut, ERROR_CODES: Error}, summary="Get a user")
def user_get(request: HttpRequest, user_id: int) -> Any:
    return _user(user_id)


def _act(request: HttpRequest, user_id: int, change: Callable[[User, User], None], field: str | None = None) -> User:
    by = user_of(request)
    user = _user(user_id)
    try:
        change(user, by)
    except services.UnknownPermissionError as exc:
        raise ApiError(400, str(exc), field=field) from None
    except services.AccountsError as exc:
        raise ApiError(409, str(exc), field=field) from None
    user.refresh_from_db()
    return user


# action in the path: (summary, the field a refusal names, the change)
ACTIONS: dict[str, tuple[str, str, Callable[[User, User], None]]] = {
    "approve": ("Approve", "status", lambda user, by: services.user_approve(user=user, by=by)),
    "disable": ("Disable", "status", lambda user, by: services.user_disable(user=user, by=by)),
    "enable": ("Enable again", "status", lambda user, by: services.user_enable(user=user, by=by)),
    "grant-admin": (
        "Make administrator",
        "is_admin",
        lambda user, by: services.user_set_admin(user=user, is_admin=True, by=by),
    ),
    "revoke-admin": (
        "Revoke administrator (refused for the last active administrator, yourself included)",
        "is_admin",
        lambda user, by: services.user_set_admin(user=user, is_admin=False, by=by),
    ),
}


def _register_action(action: str, summary: str, field: str, change: Callable[[User, User], None]) -> None:
    def view(request: HttpRequest, user_id: int) -> Any:
        return _act(request, user_id, change, field)

    view.__name__ = f"user_{action.replace('-', '_')}"
    router.post(f"/{{int:user_id}}/{action}", response={200: UserOut, ERROR_CODES: Error}, summary=summary)(view)


for _action, (_summary, _field, _change) in ACTIONS.items():
    _register_action(_action, _summary, _field, _change)


class PermissionIn(Schema):
    permission: str = Field(description=f"One of: {', '.join(GRANTABLE_RIGHTS)}.")


def _set_permission(request: HttpRequest, user_id: int, permission: str, *, granted: bool) -> User:
    def change(user: User, by: User) -> None:
        services.user_set_permission(user=user, permission=permission, granted=granted, by=by)

    return _act(request, user_id, change, "permission")


@router.post(
    "/{int:user_id}/grant-permission", response={200: UserOut, ERROR_CODES: Error}, summary="Grant a permission"
)
def user_grant_permission(request: HttpRequest, user_id: int, body: PermissionIn) -> Any:
    return _set_permission(request, user_id, body.permission, granted=True)


@router.post(
    "/{int:user_id}/revoke-permission", response={200: UserOut, ERROR_CODES: Error}, summary="Revoke a permission"
)
def user_revoke_permission(request: HttpRequest, user_id: int, body: PermissionIn) -> Any:
    """Revokes the account's own grant; a permission held through a group stays (see `permissions`)."""
    return _set_permission(request, user_id, body.permission, granted=False)


@router.post("/{int:user_id}/password", response={200: UserOut, ERROR_CODES: Error}, summary="Set a new password")
def user_password(request: HttpRequest, user_id: int, body: PasswordIn) -> Any:
    """Django's password validators apply, as on the page; the account's sessions end."""
    by = user_of(request)
    user = _user(user_id)
    form = SetPasswordForm(user, {"new_password1": body.password, "new_password2": body.password})
    if not form.is_valid():
        messages = [str(message) for errors in form.errors.values() for message in errors]
        raise ApiError(400, messages[0], field="password", errors={"password": messages})
    services.user_set_password(user=user, password=form.cleaned_data["new_password1"], by=by)
    return user


@router.delete("/{int:user_id}", response={204: None, ERROR_CODES: Error}, summary="Delete a user")
def user_delete(request: HttpRequest, user_id: int) -> Any:
    by = user_of(request)
    try:
        services.user_delete(user=_user(user_id), by=by)
    except services.AccountsError as exc:
        raise ApiError(409, str(exc)) from None
    return Status(204, None)
