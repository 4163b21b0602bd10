"""`/metrics` for Prometheus, and the audit page (`/audit/`) with its CSV export."""

from __future__ import annotations

import base64

from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from accounts.middleware import public
from accounts.models import User
from gateway.keys import authenticate_key, key_from_headers
from monitoring.collector import ManagerCollector
from monitoring.gateway_metrics import GatewayCollector

READ_METRICS = "gateway.read_metrics"
PAGE_SIZE = 50
CSV_COLUMNS = ("when", "who", "kind", "action", "subject", "message")

REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ManagerCollector())
REGISTRY.register(GatewayCollector())


class Unauthenticated(Exception):
    """No credentials, or wrong ones: the scraper should send (other) credentials."""


def _basic_auth_user(request: HttpRequest, header: str) -> User:
    """The account named by HTTP Basic credentials (email and password), checked like a login,
    so failed attempts count towards django-axes' lockout."""
    try:
        email, _, password = base64.b64decode(header.removeprefix("Basic ").strip()).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError): all ValueErrors
        raise Unauthenticated from None
    user = authenticate(request, username=email, password=password)  # a lockout raises PermissionDenied
    if not isinstance(user, User):
        raise Unauthenticated
    return user


def _api_key_user(request: HttpRequest) -> User | None:
    """The owner of the usable API key the request carries (Bearer or x-api-key); None without one."""
    raw = key_from_headers(request.headers.get("Authorization", ""), request.headers.get("x-api-key", ""))
    if not raw:
        return None
    key = authenticate_key(raw)
    if key is None:
        raise Unauthenticated
    return key.user


def _metrics_reader(request: HttpRequest) -> User:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        user = _basic_auth_user(request, header)
    elif key_user := _api_key_user(request):
        user = key_user
    elif request.user.is_authenticated and isinstance(request.user, User):
        user = request.user
    else:
        raise Unauthenticated
    if not (user.is_approved and (user.is_admin or user.has_perm(READ_METRICS))):
        raise PermissionDenied
    return user


@public  # answers 401/403 itself: a scraper cannot follow a redirect to the login page
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    try:
        _metrics_reader(request)
    except Unauthenticated:
        response = HttpResponse("Credentials needed: an administrator's account or an API key.\n", status=401)
        response["WWW-Authenticate"] = 'Basic realm="MLX Manager metrics", charset="UTF-8"'
        return response
    # Text format 0.0.4: what every Prometheus understands (Debian's 2.42 included).
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)
