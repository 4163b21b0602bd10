"""CORS on `/v1/` for browser apps on the origins `MLXM_CORS_ORIGINS` names: the preflight answered
without a key (`/v1/` and the pages run the same middleware); never on a page, and none at all
unless set."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient

pytestmark = pytest.mark.django_db(transaction=True)

APP = "https://chat.example.com"
SDK_HEADERS = "authorization, content-type, x-stainless-os, x-stainless-retry-count, anthropic-version, x-api-key"


@pytest.fixture
def cors(settings: Any) -> Any:
    settings.CORS_ALLOWED_ORIGINS = [APP, "http://localhost:3000"]
    return settings


def preflight(path: str, origin: str, method: str = "POST") -> Any:
    return ThreadClient().options(
        path,
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": SDK_HEADERS,
        },
    )


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_key(cors: Any) -> None:
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models"):
        answer = preflight(path, APP)
        assert answer.status_code == 200, (path, answer.status_code)
        assert answer["access-control-allow-origin"] == APP
        allowed = {h.strip() for h in answer["access-control-allow-headers"].split(",")}
        assert {h.strip() for h in SDK_HEADERS.split(",")} <= allowed
        assert "POST" in answer["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in answer  # a key, never the session cookie


def test_the_answer_itself_carries_the_origin(cors: Any, approved_user: User) -> None:
    secret = key_create(user=approved_user, name="k").secret
    answer = ThreadClient().get("/v1/models", headers={"origin": APP, "authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer["access-control-allow-origin"] == APP
    assert "retry-after" in answer["access-control-expose-headers"]
    refused = ThreadClient().get("/v1/models", headers={"origin": APP})  # no key: still readable by the app
    assert refused.status_code == 401 and refused["access-control-allow-origin"] == APP


def test_another_origin_gets_no_allow_origin(cors: Any) -> None:
    answer = preflight("/v1/chat/completions", "https://evil.example.net")
    assert "access-control-allow-origin" not in answer


def test_pages_never_get_cors_headers(settings: Any, approved_user: User) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]
    browser = ThreadClient()
    browser.force_login(approved_user, backend="accounts.backends.EmailBackend")
    answer = browser.get("/servers/", headers={"origin": APP})
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
    answer = preflight("/servers/", APP)
    assert "access-control-allow-origin" not in answer


def test_unset_sends_none(settings: Any) -> None:
    assert settings.CORS_ALLOWED_ORIGINS == []  # the default, MLXM_CORS_ORIGINS unset in the tests
    answer = preflight("/v1/chat/completions", APP)
    assert not [h for h in answer.headers if h.lower().startswith("access-control-allow-origin")]
