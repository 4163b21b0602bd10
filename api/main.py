"""The `/api/v1/` NinjaAPI: key authentication on every operation, one error shape, the routers.

The schema (`openapi.json`) and the docs page are for a signed-in browser or a key holder alike;
everything else needs a key (see api/auth.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser
from ninja.types import DictStrAny

from accounts.models import User
from api import library, limits, profiles, servers, system, users
from api.auth import ApiKeyAuth, user_of
from api.errors import ERROR_CODES, ApiError, Error
from core.jsontext import not_text_at
from gateway.keys import authenticate_key, key_from_headers

UNAUTHORIZED = "Send a personal API key as `Authorization: Bearer <key>` (create one under Account → API keys)."


def unauthorized() -> JsonResponse:
    response = JsonResponse({"detail": UNAUTHORIZED, "field": None, "errors": None}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="mlx-manager"'
    return response


def key_or_session(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the schema and docs page: a signed-in approved user or a valid key, else 401."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not (isinstance(user, User) and user.is_approved):
            raw = key_from_headers(request.headers.get("Authorization", ""), "")
            if authenticate_key(raw) is None:
                return unauthorized()
        return view(request, *args, **kwargs)

    wrapper.api_auth = "key_or_session"  # type: ignore[attr-defined]
    return wrapper


class TextOnlyParser(Parser):
    """JSON bodies as ninja reads them, refused when a string is not text: `"\\ud800"` (a lone
    UTF-16 surrogate) is valid JSON and a Python str, but no database can store it (SQLite's
    encode raised a 500). One check for every operation, before any schema sees the body."""

    def parse_body(self, request: HttpRequest) -> DictStrAny:
        data = super().parse_body(request)
        if (path := not_text_at(data)) is not None:
            field = ".".join(path) or None
            detail = "The text is not valid Unicode (it holds a lone UTF-16 surrogate, such as \\ud800)."
            raise ApiError(400, f"{field}: {detail}" if field else detail, field=field)
        return data


api = NinjaAPI(
    title="MLX Manager API",
    version="1",
    description=(
        "Everything the pages do, for scripts. Authenticate with a personal API key "
        "(`Authorization: Bearer mlxm_…`). A key limited to using models may read (GET); "
        "changes need a key that may also manage. Refusals come back as 400/403/404/409 with "
        '`{"detail": ..., "field": ...}`.'
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api",
    docs_decorator=key_or_session,
    parser=TextOnlyParser(),
)


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return unauthorized()


@api.exception_handler(PermissionDenied)
def on_forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Not allowed.", "field": None}, status=403)


@api.exception_handler(ApiError)
def on_refused(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return api.create_response(request, exc.body(), status=exc.status)


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """ninja's own refusals (a body it cannot parse) in the one shape; ninja wraps whatever the
    parser raises in an HttpError, so the parser's ApiError is its cause."""
    if isinstance(exc.__cause__, ApiError):
        return on_refused(request, exc.__cause__)
    return api.create_response(request, {"detail": str(exc), "field": None, "errors": None}, status=exc.status_code)


@api.exception_handler(NinjaValidationError)
def on_invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    """A body or parameter of the wrong type: 400 naming the field, like a form's refusal."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "payload")]
        errors.setdefault(".".join(location) or "body", []).append(str(error.get("msg", "Invalid value.")))
    field, messages = next(iter(errors.items()))
    return api.create_response(
        request, {"detail": f"{field}: {messages[0]}", "field": field, "errors": errors}, status=400
    )


class MeOut(Schema):
    id: int
    email: str
    is_admin: bool
    key_name: str
    key_may_manage: bool
    permissions: list[str]


@api.get("/me", response={200: MeOut, ERROR_CODES: Error}, tags=["me"], summary="Who the key belongs to")
def me(request: HttpRequest) -> Any:
    user = user_of(request)
    key: Any = request.auth  # type: ignore[attr-defined]
    return {
        "id": user.pk,
        "email": user.email,
        "is_admin": user.is_admin,
        "key_name": key.name,
        "key_may_manage": key.may_manage,
        "permissions": sorted(user.get_all_permissions()),
    }


api.add_router("/profiles/", profiles.router)
api.add_router("/servers/", servers.router)
api.add_router("/models/", library.router)
api.add_router("/system/", system.router)
api.add_router("/users/", users.router)
api.add_router("/limits/", limits.router)
