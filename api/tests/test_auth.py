"""Nothing under /api/ answers without a key: checked by walking the URLconf, and per operation
of the schema; keys that may only use models, and members, are refused what they may not do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import User
from api.main import api
from api.tests.conftest import ApiClient, KeyMaker
from gateway.models import ApiKey

METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"<(?:(?P<converter>\w+):)?\w+>")


def _routes(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry, route)
        elif isinstance(entry, URLPattern):
            yield route


def _concrete(route: str) -> str:
    return "/" + PARAM.sub(lambda m: "a/b" if m.group("converter") == "path" else "1", route.lstrip("^"))


def api_routes() -> list[str]:
    return sorted({_concrete(route) for route in _routes(get_resolver()) if route.startswith("api/")})


def schema_operations() -> list[tuple[str, str]]:
    paths = api.get_openapi_schema()["paths"]
    return [
        (method, re.sub(r"\{[^}]+\}", "1", path).removeprefix("/api/v1"))
        for path, operations in paths.items()
        for method in operations
        if method in METHODS
    ]


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, (response.status_code, response.content[:200])
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]


@pytest.mark.django_db
def test_every_api_route_in_the_urlconf_refuses_a_request_without_a_key(client: Any) -> None:
    routes = api_routes()
    assert "/api/v1/openapi.json" in routes and "/api/v1/me" in routes and len(routes) > 20
    for url in routes:
        answers = {method: getattr(client, method)(url) for method in METHODS}
        allowed = {method: r for method, r in answers.items() if r.status_code != 405}
        assert allowed, f"{url} answers no method"
        for method, response in allowed.items():
            assert response.status_code == 401, (method, url, response.status_code)
            assert response["WWW-Authenticate"].startswith("Bearer"), (method, url)


@pytest.mark.django_db
def test_every_operation_of_the_schema_without_a_key_or_with_a_bad_one_is_401(make_key: KeyMaker) -> None:
    operations = schema_operations()
    assert len(operations) > 25
    for secret in (None, "mlxm_not-a-key", "Basic dXNlcjpwYXNz"):
        client = ApiClient(secret)
        for method, path in operations:
            _assert_401(client.call(method, path))


def test_a_revoked_or_expired_key_or_a_disabled_users_key_is_401(admin_user: User, make_key: KeyMaker) -> None:
    revoked, expired, disabled = make_key(admin_user), make_key(admin_user), make_key(admin_user)
    ApiKey.objects.filter(prefix=revoked[:11]).update(revoked_at=timezone.now())
    ApiKey.objects.filter(prefix=expired[:11]).update(expires_at=timezone.now() - timedelta(seconds=1))
    for secret in (revoked, expired):
        _assert_401(ApiClient(secret).call("get", "/me"))
    assert ApiClient(disabled).call("get", "/me").status_code == 200
    User.objects.filter(pk=admin_user.pk).update(status="disabled")
    _assert_401(ApiClient(disabled).call("get", "/me"))


def test_me_names_the_keys_user(admin_api: ApiClient, admin_user: User) -> None:
    body = admin_api.call("get", "/me").json()
    assert body["email"] == admin_user.email and body["is_admin"] is True and body["key_may_manage"] is True


def test_the_schema_and_docs_need_a_key_or_a_signed_in_user(admin_api: ApiClient, user_client: Any) -> None:
    _assert_401(ApiClient(None).call("get", "/openapi.json"))
    schema = admin_api.call("get", "/openapi.json").json()
    assert "/api/v1/servers/{profile_id}/start" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    docs = user_client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "cdn" not in html.lower()


def test_a_using_only_key_may_read_but_every_write_is_403(using_only_api: ApiClient) -> None:
    assert using_only_api.call("get", "/profiles/").status_code == 200
    writes = [(method, path) for method, path in schema_operations() if method != "get"]
    assert len(writes) > 10
    for method, path in writes:
        response = using_only_api.call(method, path, {})
        assert response.status_code == 403, (method, path, response.status_code)
        assert "may only use models" in response.json()["detail"]


def test_a_members_key_on_every_administrators_endpoint_is_403(member_api: ApiClient) -> None:
    admin_only = [
        (method, path)
        for method, path in schema_operations()
        if path.startswith("/users") or path == "/system/services"
    ]
    assert len(admin_only) >= 10
    for method, path in admin_only:
        response = member_api.call(method, path, {})
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json()["detail"] == "Only administrators may do this."
