"""Refusals the gateway gives before any model server is involved, through Django's test client:
each in its API's JSON shape, authentication before anything about the body."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.models import ServerState
from servers.tests.factories import set_server
from testing.net import free_port

# Transactional: the usage record is written from another thread, which must not wait on the
# test's open transaction.
pytestmark = pytest.mark.django_db(transaction=True)


class ThreadClient(Client):
    """Django's test client, each request from a fresh thread: a Playwright browser started earlier
    in the same pytest worker (the e2e tests) leaves an event loop running in the main thread, where
    the client cannot call the gateway's async views (asgiref refuses)."""

    def request(self, **request: Any) -> Any:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(super().request, **request).result()


def post(client: Client, path: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=headers)


def test_no_key_is_401_in_each_shape_even_for_a_bad_body() -> None:
    answer = post(ThreadClient(), "/v1/chat/completions", "not json")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    answer = post(ThreadClient(), "/v1/messages", {"model": "x"})
    assert answer.status_code == 401
    assert answer.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": answer.json()["error"]["message"]},
    }
    assert ThreadClient().get("/v1/models").status_code == 401  # not a redirect to the login page


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/chat/completions", "{", "not valid JSON"),
        ("/v1/chat/completions", [1, 2], "JSON object"),
        ("/v1/chat/completions", {"messages": []}, "model: required"),
        ("/v1/chat/completions", '{"model": "tiny", "messages": [], "temperature": NaN}', "not valid JSON"),
        (
            "/v1/chat/completions",
            '{"model": "tiny", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "not valid JSON",
        ),
        (
            "/v1/chat/completions",
            '{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
            "surrogate",
        ),
        ("/v1/messages", '{"model": "a\\udfffb", "max_tokens": 5, "messages": []}', "surrogate"),
        ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, "messages: required"),
        ("/v1/chat/completions", {"model": "tiny", "messages": [], "stream": "yes"}, "stream: must be"),
        ("/v1/completions", {"model": "tiny"}, "prompt: required"),
        ("/v1/messages", {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: required"),
        (
            "/v1/messages",
            {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "content.0.source: must be {'type': 'base64'",
        ),
        (
            "/v1/messages",
            {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
    ],
)
def test_malformed_bodies_are_400_and_say_why(approved_user: User, path: str, body: Any, words: str) -> None:
    ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    secret = key_create(user=approved_user, name="k").secret
    answer = post(ThreadClient(), path, body, authorization=f"Bearer {secret}")
    assert answer.status_code == 400, answer.content
    message = answer.json()["error"]["message"]
    assert words in message


def test_session_needs_the_csrf_token(approved_user: User) -> None:
    ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    browser = ThreadClient(enforce_csrf_checks=True)
    browser.force_login(approved_user, backend="accounts.backends.EmailBackend")
    assert browser.get("/v1/models").json()["data"][0]["id"] == "tiny"  # a GET needs none
    answer = post(browser, "/v1/chat/completions", {"model": "tiny", "messages": []})
    assert answer.status_code == 403 and "CSRF" in answer.json()["error"]["message"]
    browser.get("/accounts/keys/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    answer = post(browser, "/v1/chat/completions", {"model": "tiny", "messages": []}, x_csrftoken=token)
    assert answer.status_code == 503  # past the CSRF check: the server is not running
    assert answer["Retry-After"]


def test_wrong_method_is_405_json(approved_user: User) -> None:
    secret = key_create(user=approved_user, name="k").secret
    answer = ThreadClient().get("/v1/chat/completions", headers={"x-api-key": secret})
    assert answer.status_code == 405 and answer.json()["error"]["message"] == "Use POST."


@pytest.mark.mlx
@pytest.mark.parametrize(
    ("path", "extra", "shape"),
    [
        ("/v1/chat/completions", {}, "openai"),
        ("/v1/completions", {}, "openai"),
        ("/v1/messages", {"max_tokens": 5}, "anthropic"),
    ],
)
def test_a_prompt_longer_than_the_context_is_400_with_the_counts(
    approved_user: User, tiny_model: Path, path: str, extra: dict[str, Any], shape: str
) -> None:
    """The same rule as the server page's chat (the tiny model's context is 256 tokens); nothing is
    sent: nothing listens on the port, so a prompt that got past the check would be a 502."""
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port())
    set_server(profile, ServerState.RUNNING, port=profile.port)
    secret = key_create(user=approved_user, name="k").secret
    text = " ".join(["hello"] * 300)
    body: dict[str, Any] = {"model": "tiny", **extra}
    if path == "/v1/completions":
        body["prompt"] = text
    else:
        body["messages"] = [{"role": "user", "content": text}]
    answer = post(ThreadClient(), path, body, authorization=f"Bearer {secret}")
    assert answer.status_code == 400, answer.content
    assert ("type" in answer.json()) is (shape == "anthropic")
    assert "The prompt is 300 tokens; the model's context holds 256" in answer.json()["error"]["message"]
    body = (
        {**body, "prompt": "hello"}
        if path == "/v1/completions"
        else {**body, "messages": [{"role": "user", "content": "hello"}]}
    )
    assert post(ThreadClient(), path, body, authorization=f"Bearer {secret}").status_code == 502  # a short one goes on


def test_inline_media_passes_the_url_check(approved_user: User) -> None:
    """A data: URL and base64 go past the check (here to the 503 of a stopped vision server); a URL
    does not; a text-only model takes no images at all."""
    ServerProfile.objects.create(name="tiny", model="/m", port=9001, engine="mlx_vlm", kind="vision")
    ServerProfile.objects.create(name="text", model="/t", port=9002)
    secret = key_create(user=approved_user, name="k").secret
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    chat = {"model": "tiny", "messages": [{"role": "user", "content": [image]}]}
    assert post(ThreadClient(), "/v1/chat/completions", chat, authorization=f"Bearer {secret}").status_code == 503
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    message = {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    assert post(ThreadClient(), "/v1/messages", message, x_api_key=secret).status_code == 503
    for path, body in (("/v1/chat/completions", chat), ("/v1/messages", message)):
        answer = post(ThreadClient(), path, {**body, "model": "text"}, x_api_key=secret)
        assert answer.status_code == 400 and "takes no images" in answer.json()["error"]["message"]
    image["image_url"] = {"url": " HTTP://127.0.0.1/x"}
    answer = post(ThreadClient(), "/v1/chat/completions", chat, authorization=f"Bearer {secret}")
    assert answer.status_code == 400 and "image_url.url" in answer.json()["error"]["message"]
