"""`/v1/models/{id}`, unknown `/v1/` paths and wrong methods, through Django's test client: always
JSON in the API's shape, never an HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient, post
from profiles.models import ServerProfile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def secret(approved_user: User) -> str:
    ServerProfile.objects.create(name="tiny", model="/m", port=9001, aliases="gpt-4o-mini")
    return key_create(user=approved_user, name="k").secret


def test_unknown_paths_are_json_404_in_the_apis_shape(secret: str) -> None:
    for path in ("/v1/audio/speech", "/v1/chat/completions/extra", "/v1/", "/v1/models/"):
        answer = post(ThreadClient(), path, {}, authorization=f"Bearer {secret}")
        assert answer.status_code == 404 and answer["Content-Type"] == "application/json", path
        assert answer.json()["error"]["type"] == "invalid_request_error" and path in answer.json()["error"]["message"]
    answer = post(ThreadClient(), "/v1/messages/batches", {}, x_api_key=secret)
    assert answer.status_code == 404
    assert answer.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": answer.json()["error"]["message"]},
    }
    assert ThreadClient().get("/v1/nothing").status_code == 401  # without a key: no map of the paths


def test_a_wrong_method_is_405_with_allow(secret: str) -> None:
    for path, allow in (("/v1/chat/completions", "POST"), ("/v1/completions", "POST"), ("/v1/messages", "POST")):
        answer = ThreadClient().get(path, headers={"authorization": f"Bearer {secret}"})
        assert (answer.status_code, answer["Allow"]) == (405, allow), path
        assert "error" in answer.json()
    answer = post(ThreadClient(), "/v1/models", {}, authorization=f"Bearer {secret}")
    assert (answer.status_code, answer["Allow"]) == (405, "GET")
    answer = ThreadClient().delete("/v1/models/tiny", headers={"authorization": f"Bearer {secret}"})
    assert (answer.status_code, answer["Allow"]) == (405, "GET")


def test_one_model_is_the_lists_entry(secret: str, approved_user: User) -> None:
    headers = {"authorization": f"Bearer {secret}"}
    listed = ThreadClient().get("/v1/models", headers=headers).json()["data"]
    assert ThreadClient().get("/v1/models/tiny", headers=headers).json() == listed[0]
    assert ThreadClient().get("/v1/models/GPT-4o-mini", headers=headers).json() == listed[0]  # by alias
    answer = ThreadClient().get("/v1/models/gpt-5", headers=headers)
    assert answer.status_code == 404 and "gpt-5" in answer.json()["error"]["message"]
    answer = ThreadClient().get("/v1/models/gpt-5", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
    assert answer.json()["type"] == "error"
    # a key limited to another model cannot read this one
    other = ServerProfile.objects.create(name="other", model="/o", port=9002)
    limited = key_create(user=approved_user, name="l", profiles=[other]).secret
    answer = ThreadClient().get("/v1/models/tiny", headers={"authorization": f"Bearer {limited}"})
    assert answer.status_code == 404
    assert ThreadClient().get("/v1/models/tiny").status_code == 401


def test_capabilities_follow_the_chat_template(approved_user: User, tmp_path: Path, settings: Any) -> None:
    settings.MLXM_MODEL_DIRS = [str(tmp_path)]
    templates = {
        "plain": {"chat_template": "{{ messages[0]['content'] }}"},
        "agentic": {"chat_template": [{"name": "default", "template": "{% if tools %}{{ tools }}{% endif %}"}]},
    }
    for name, tokenizer_config in templates.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        ServerProfile.objects.create(name=name, model=str(tmp_path / name), port=9100 + len(name))
    ServerProfile.objects.create(name="elsewhere", model="/not/here", port=9200)
    secret = key_create(user=approved_user, name="k").secret
    listed = ThreadClient().get("/v1/models", headers={"authorization": f"Bearer {secret}"}).json()["data"]
    capabilities = {entry["id"]: entry["capabilities"] for entry in listed}
    assert capabilities == {
        "plain": ["chat", "completions", "messages", "responses"],
        "agentic": ["chat", "completions", "messages", "responses", "tools"],
        "elsewhere": ["chat", "completions", "messages", "responses"],
    }
