"""What each kind of model answers, checked before any model server is asked (the profiles here
have no server running: a request that gets past the checks ends at the 503 of a stopped one)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from gateway.errors import GatewayError
from gateway.kinds import kind_guard
from gateway.models import GatewayApi
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient, post
from profiles.models import Engine, Kind, ServerProfile

pytestmark = pytest.mark.django_db(transaction=True)  # the usage record is written from another thread
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.fixture
def secret(approved_user: User) -> str:
    for port, (name, kind) in enumerate([("vis", "vision"), ("emb", "embeddings"), ("rr", "rerank")], 9101):
        ServerProfile.objects.create(name=name, model=f"/m/{name}", port=port, engine="mlx_vlm", kind=kind)
    ServerProfile.objects.create(name="text", model="/m/text", port=9100)
    return key_create(user=approved_user, name="k").secret


def chat(model: str, content: Any = "hi") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/chat/completions", chat("emb"), 400, "'emb' is an embeddings model: it answers POST /v1/embeddings"),
        ("/v1/responses", {"model": "rr", "input": "hi"}, 400, "it answers POST /v1/rerank, not chat"),
        ("/v1/embeddings", {"model": "vis", "input": "hi"}, 400, "vision chat model"),
        ("/v1/rerank", {"model": "emb", "query": "q", "documents": ["d"]}, 400, "not POST /v1/rerank"),
        ("/v1/chat/completions", chat("text", [IMAGE]), 400, "takes no images ('text' is a text-only model)"),
        ("/v1/chat/completions", chat("vis", [{"type": "input_audio", "input_audio": {}}]), 400, "no input_audio"),
        ("/v1/completions", {"model": "vis", "prompt": "hi"}, 400, "no /v1/completions"),
        ("/v1/chat/completions", chat("vis", [IMAGE]), 503, "'vis' is stopped"),
        ("/v1/embeddings", {"model": "emb", "input": ["a", "b"]}, 503, "'emb' is stopped"),
        ("/v1/embeddings", {"model": "emb", "input": "a", "stream": True}, 400, "stream: not supported"),
        ("/v1/embeddings", {"model": "emb", "input": ["a", ""]}, 400, "input[1]: must be a non-empty string"),
        ("/v1/embeddings", {"model": "emb", "input": [{"type": "image_url"}]}, 400, "input[0]"),
        ("/v1/embeddings", {"model": "emb", "input": "x", "dimensions": True}, 400, "dimensions"),
        ("/v1/rerank", {"model": "rr", "query": "q", "documents": "d"}, 400, "documents: must be a non-empty list"),
        ("/v1/rerank", {"model": "rr", "query": "q", "documents": ["d"], "return_documents": 1}, 400, "return_doc"),
        ("/v1/rerank", {"model": "rr", "query": "q", "documents": ["d"] * 2049}, 400, "at most 2048"),
    ],
)
def test_each_kind_answers_its_own_endpoint(secret: str, path: str, body: Any, status: int, words: str) -> None:
    answer = post(ThreadClient(), path, body, authorization=f"Bearer {secret}")
    assert answer.status_code == status, answer.content
    assert words in answer.json()["error"]["message"]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "/etc/hostname", "data:text/plain;base64,aGk="])
def test_a_vision_model_takes_inline_images_only(secret: str, url: str) -> None:
    image = {"type": "image_url", "image_url": {"url": url}}
    answer = post(ThreadClient(), "/v1/chat/completions", chat("vis", [image]), authorization=f"Bearer {secret}")
    assert answer.status_code == 400 and "image_url" in answer.json()["error"]["message"]


def test_an_anthropic_image_goes_to_a_vision_model_only(secret: str) -> None:
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    answer = post(ThreadClient(), "/v1/messages", {**body, "model": "text"}, x_api_key=secret)
    assert answer.status_code == 400 and "takes no images" in answer.json()["error"]["message"]
    assert answer.json()["type"] == "error"
    assert post(ThreadClient(), "/v1/messages", {**body, "model": "vis"}, x_api_key=secret).status_code == 503


def test_mlx_vlm_is_sent_its_own_model_and_no_adapter() -> None:
    profile = ServerProfile(name="v", model="/models/qwen-vl", engine=Engine.MLX_VLM, kind=Kind.VISION)
    upstream = {"model": "default_model", "adapter_path": "/tmp/evil", "draft_model": "x", "messages": []}
    kind_guard(GatewayApi.CHAT, profile, upstream)
    assert upstream == {"model": "/models/qwen-vl", "messages": []}
    text = ServerProfile(name="t", model="/models/llama")
    untouched = {"model": "default_model", "messages": []}
    kind_guard(GatewayApi.COMPLETIONS, text, untouched)
    assert untouched == {"model": "default_model", "messages": []}
    with pytest.raises(GatewayError):
        kind_guard(GatewayApi.COMPLETIONS, profile, {})


def test_a_body_too_large_is_a_400_in_the_apis_shape(secret: str, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2000}}
    answer = post(ThreadClient(), "/v1/chat/completions", chat("vis", [image]), authorization=f"Bearer {secret}")
    assert answer.status_code == 400 and "over 1000 bytes" in answer.json()["error"]["message"]


def test_a_responses_input_image_goes_to_a_vision_model_only(secret: str) -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    turn = [{"role": "user", "content": [{"type": "input_text", "text": "what is it"}, image]}]
    answer = post(ThreadClient(), "/v1/responses", {"model": "text", "input": turn}, authorization=f"Bearer {secret}")
    assert answer.status_code == 400 and "takes no images" in answer.json()["error"]["message"]
    answer = post(ThreadClient(), "/v1/responses", {"model": "vis", "input": turn}, authorization=f"Bearer {secret}")
    assert answer.status_code == 503, answer.content
