"""`POST /v1/messages/count_tokens` through Django's test client on the tiny model's real files:
counted without a running server, by the model's own template, and checked like `/v1/messages`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from accounts.models import User
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient, post
from profiles.models import ServerProfile

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = [{"role": "user", "content": "hello model"}]


def test_counted_from_the_models_own_template_without_a_server(approved_user: User, tiny_model: Path) -> None:
    ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=9001)  # stopped
    secret = key_create(user=approved_user, name="k").secret
    body: dict[str, Any] = {"model": "tiny", "system": "the answer is yes", "messages": QUESTION}
    answer = post(ThreadClient(), "/v1/messages/count_tokens", body, x_api_key=secret)
    assert answer.status_code == 200, answer.content
    chat = [{"role": "system", "content": "the answer is yes"}, *QUESTION]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    expected: Any = tokenizer.apply_chat_template(chat, add_generation_prompt=True)
    assert answer.json() == {"input_tokens": len(expected["input_ids"])}

    # as Claude Code calls it: ?beta=true and its betas' header change nothing
    betas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    beta = post(ThreadClient(), "/v1/messages/count_tokens?beta=true", body, x_api_key=secret, anthropic_beta=betas)
    assert beta.json() == answer.json()

    ServerProfile.objects.filter(name="tiny").update(chat_template="{{ messages[0]['content'] }}")  # the profile's own
    answer = post(ThreadClient(), "/v1/messages/count_tokens", body, x_api_key=secret)
    assert answer.json() == {"input_tokens": 4}  # "the answer is yes", nothing else


def test_refused_like_messages(approved_user: User, tiny_model: Path) -> None:
    tiny = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=9001)
    other = ServerProfile.objects.create(name="other", model=str(tiny_model), port=9002)
    gone = ServerProfile.objects.create(name="gone", model="/nowhere/model", port=9003)
    body: dict[str, Any] = {"model": "tiny", "messages": QUESTION}
    limited = key_create(user=approved_user, name="k", profiles=[other, gone]).secret
    client = ThreadClient()
    assert post(client, "/v1/messages/count_tokens", body).status_code == 401
    refused = post(client, "/v1/messages/count_tokens", body, x_api_key=limited)
    assert refused.status_code == 403 and refused.json()["type"] == "error"
    assert tiny.name in refused.json()["error"]["message"]
    missing = post(client, "/v1/messages/count_tokens", {**body, "model": "gone"}, x_api_key=limited)
    assert missing.status_code == 400 and "not on this machine" in missing.json()["error"]["message"]
    bad = post(client, "/v1/messages/count_tokens", {**body, "model": "other", "tools": [{}]}, x_api_key=limited)
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("tools.0.name: required")
    answer = client.get("/v1/messages/count_tokens", headers={"x-api-key": limited})
    assert answer.status_code == 405 and answer["Allow"] == "POST"


def test_tools_count_toward_the_context(approved_user: User, tiny_model: Path) -> None:
    """The tiny model's context is 256 tokens: a short question with a tool whose description is
    longer than that is refused before anything starts (on demand: nothing is started for it)."""
    ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=9001, on_demand=True)
    secret = key_create(user=approved_user, name="k").secret
    tool = {"name": "f", "description": " ".join(["hello world"] * 200), "input_schema": {"type": "object"}}
    body = {"model": "tiny", "max_tokens": 8, "messages": QUESTION, "tools": [tool]}
    answer = post(ThreadClient(), "/v1/messages", body, x_api_key=secret)
    assert answer.status_code == 400 and "The prompt is" in answer.json()["error"]["message"]


def test_a_template_that_runs_for_ever_is_stopped_and_counting_goes_on(
    approved_user: User, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template is a program the profile's maker wrote: it runs in the counting process, which
    is ended at the time limit, never in the web worker's thread."""
    from gateway import token_pool

    monkeypatch.setattr(token_pool, "COUNT_TIMEOUT", 20.0)
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ServerProfile.objects.create(name="endless", model=str(tiny_model), port=9001, chat_template=endless)
    ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=9002)
    secret = key_create(user=approved_user, name="k").secret
    stopped = post(
        ThreadClient(), "/v1/messages/count_tokens", {"model": "endless", "messages": QUESTION}, x_api_key=secret
    )
    assert stopped.status_code == 400 and "was stopped" in stopped.json()["error"]["message"]
    counted = post(
        ThreadClient(), "/v1/messages/count_tokens", {"model": "tiny", "messages": QUESTION}, x_api_key=secret
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
