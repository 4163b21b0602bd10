"""The gateway in front of the second engine: real mlx_vlm.server processes on the tiny models
(testing/tinyvlm.py) run by a real supervisor, gunicorn, and the real `openai` and `anthropic`
clients: embeddings, rerank and images in chat, each kind's refusals, usage and /v1/models."""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from accounts.models import User
from gateway.models import UsageRecord
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from profiles.models import ServerProfile
from testing.net import free_port
from testing.supervisor import wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def chat_image(image: str) -> Any:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}


class VlmLive:
    def __init__(self, web: WebServer, secret: str) -> None:
        self.web, self.secret = web, secret

    def oai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.web.url + "/v1", api_key=self.secret, max_retries=0, timeout=60)

    def ant(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.web.url, api_key=self.secret, max_retries=0, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secret}"}
        return httpx.post(self.web.url + path, json=body, headers=headers, timeout=60, trust_env=False)


@pytest.fixture
def vlm_live(
    supervisor_process: Any, tiny_vlm_models: dict[str, Path], tmp_path: Path, make_user: Callable[..., User]
) -> Iterator[VlmLive]:
    supervisor_process.start()
    for kind in ("vision", "embeddings", "rerank"):
        start_profile(tiny_vlm_models[kind], f"tiny-{kind}", supervisor_process, engine="mlx_vlm", kind=kind)
    ServerProfile.objects.create(name="text-only", model="/models/none", port=free_port())  # stopped, mlx-lm chat
    user = make_user("member@example.com")
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        yield VlmLive(web, key_create(user=user, name="laptop").secret)
    finally:
        web.stop()


def test_embeddings_rerank_and_images_through_the_real_clients(vlm_live: VlmLive) -> None:
    client = vlm_live.oai()
    # embeddings: a list, floats; a string, base64 (the SDK's default, which it decodes itself)
    floats = client.embeddings.create(
        model="tiny-embeddings", input=["hello world", "the cat"], encoding_format="float"
    )
    assert [item.index for item in floats.data] == [0, 1]
    assert all(len(item.embedding) == 16 for item in floats.data)
    assert floats.model == "tiny-embeddings" and floats.usage.prompt_tokens > 0
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-3, "mean-pooled and normalised"
    single = client.embeddings.create(model="tiny-embeddings", input="hello world")
    assert single.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-5)
    raw = vlm_live.post("/v1/embeddings", {"model": "tiny-embeddings", "input": "hello", "encoding_format": "base64"})
    assert len(struct.unpack("<16f", base64.b64decode(raw.json()["data"][0]["embedding"]))) == 16

    # rerank: the Jina/Cohere shape, best first, top_n, documents as {"text": ...}
    ranked = vlm_live.post(
        "/v1/rerank",
        {"model": "tiny-rerank", "query": "cat", "documents": ["the cat", {"text": "a dog"}, "apple tree"], "top_n": 2}
        | {"return_documents": True},
    )
    assert ranked.status_code == 200, ranked.text
    results = ranked.json()["results"]
    assert len(results) == 2 and results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert {r["index"] for r in results} <= {0, 1, 2}
    assert results[0]["document"] == {"text": ["the cat", "a dog", "apple tree"][results[0]["index"]]}
    assert ranked.json()["usage"]["prompt_tokens"] > 0

    # an image in chat: OpenAI's image_url data: URL, and Anthropic's base64 image block
    image = png()
    chat = client.chat.completions.create(
        model="tiny-vision",
        max_tokens=3,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what do you see"},
                    chat_image(image),
                ],
            }
        ],
    )
    plain = client.chat.completions.create(
        model="tiny-vision", max_tokens=3, messages=[{"role": "user", "content": "what do you see"}]
    )
    assert chat.model == "tiny-vision" and chat.usage is not None and plain.usage is not None
    assert chat.usage.prompt_tokens > plain.usage.prompt_tokens, "the image's tokens reached the model"
    message = vlm_live.ant().messages.create(
        model="tiny-vision",
        max_tokens=3,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                    {"type": "text", "text": "what is it"},
                ],
            }
        ],
    )
    assert message.model == "tiny-vision" and message.usage.input_tokens > 0
    with vlm_live.ant().messages.stream(
        model="tiny-vision", max_tokens=3, messages=[{"role": "user", "content": "what is it"}]
    ) as streamed:
        final = streamed.get_final_message()
    assert final.model == "tiny-vision" and final.usage.output_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="tiny-vision",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": [{"type": "text", "text": "and this"}, chat_image(image)]}],
        )
    )
    assert {chunk.model for chunk in chunks} == {"tiny-vision"}, "the client's name in every chunk"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > plain.usage.prompt_tokens

    records = UsageRecord.objects.filter(status=200)
    wait_for(lambda: records.count() >= 9, timeout=10, what="the usage records")
    embedded = records.filter(api="embeddings", model_name="tiny-embeddings")
    assert embedded.count() == 3 and all(r.prompt_tokens for r in embedded)
    assert records.filter(api="rerank", model_name="tiny-rerank").count() == 1


def test_each_kind_refuses_what_it_cannot_answer(vlm_live: VlmLive) -> None:
    client = vlm_live.oai()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-embeddings", messages=[{"role": "user", "content": "hi"}])
    assert "answers POST /v1/embeddings" in str(refused.value)
    with pytest.raises(anthropic.BadRequestError) as told:
        vlm_live.ant().messages.create(model="tiny-rerank", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert "answers POST /v1/rerank" in str(told.value)
    with pytest.raises(openai.BadRequestError) as wrong:
        client.embeddings.create(model="tiny-vision", input="hello")
    assert "vision chat model" in str(wrong.value) and "not POST /v1/embeddings" in str(wrong.value)

    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png()}"}}
    with pytest.raises(openai.BadRequestError) as text_only:
        client.chat.completions.create(model="text-only", messages=[{"role": "user", "content": [image]}])  # type: ignore[misc,list-item]
    assert "takes no images" in str(text_only.value) and "text-only" in str(text_only.value)
    for url in ("http://127.0.0.1:1/x.png", "/etc/hostname", "file:///etc/hostname"):
        bad = {"type": "image_url", "image_url": {"url": url}}
        with pytest.raises(openai.BadRequestError) as never_fetched:
            client.chat.completions.create(model="tiny-vision", messages=[{"role": "user", "content": [bad]}])  # type: ignore[misc,list-item]
        assert "image_url" in str(never_fetched.value), url
    with pytest.raises(openai.BadRequestError) as no_completions:
        client.completions.create(model="tiny-vision", prompt="hi", max_tokens=2)
    assert "no /v1/completions" in str(no_completions.value)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "tiny-embeddings", "input": []}, "input: must be a non-empty list"),
        ({"model": "tiny-embeddings", "input": [1, 2, 3]}, "token arrays"),
        ({"model": "tiny-embeddings", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "tiny-embeddings", "input": "x", "dimensions": 8}, "dimensions"),
        ({"model": "tiny-rerank", "query": "", "documents": ["a"]}, "query: must be"),
        ({"model": "tiny-rerank", "query": "q", "documents": [{"image": "http://x/y"}]}, "documents[0]"),
        ({"model": "tiny-rerank", "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    ]
    for body, words in cases:
        answer = vlm_live.post("/v1/rerank" if "rerank" in str(body["model"]) else "/v1/embeddings", body)
        assert answer.status_code == 400, (body, answer.text)
        assert words in answer.json()["error"]["message"], answer.text


def test_models_lists_each_kinds_capabilities(vlm_live: VlmLive) -> None:
    listed = {m.id: m.model_extra or {} for m in vlm_live.oai().models.list().data}
    assert listed["tiny-vision"]["capabilities"] == ["chat", "messages", "responses", "vision"]
    assert listed["tiny-embeddings"]["capabilities"] == ["embeddings"]
    assert listed["tiny-rerank"]["capabilities"] == ["rerank"]
    assert listed["text-only"]["capabilities"][:4] == ["chat", "completions", "messages", "responses"]
    assert {name: entry["kind"] for name, entry in listed.items()} == {
        "tiny-vision": "vision",
        "tiny-embeddings": "embeddings",
        "tiny-rerank": "rerank",
        "text-only": "chat",
    }


@pytest.mark.browser
def test_the_server_pages_try_each_kind(vlm_live: VlmLive, page: Any, tmp_path: Path) -> None:
    """In a real Chromium: an image picked in a vision model's quick chat goes with the prompt and
    shows in the conversation; an embedding model's page compares two texts; a reranker's ranks lines."""
    from conftest import browser_login, screenshots

    member = User.objects.get(email="member@example.com")
    browser_login(page, vlm_live.web.url, member.email)
    vision, embedder, reranker = (
        ServerProfile.objects.get(name=f"tiny-{k}") for k in ("vision", "embeddings", "rerank")
    )
    picture = tmp_path / "red.png"
    picture.write_bytes(base64.b64decode(png()))

    page.goto(f"{vlm_live.web.url}/servers/{vision.pk}/")
    page.fill("#id_prompt", "what do you see")
    page.set_input_files("#chat-image", str(picture))
    page.click("form.chat-form button[type=submit]")
    page.wait_for_selector(".chat-ttft")
    assert page.locator(".chat-user img.chat-image").count() == 1
    assert page.get_attribute(".chat-user img.chat-image", "src", timeout=5000).startswith("data:image/png;base64,")  # type: ignore[union-attr]
    screenshots(page, "vlm-server-vision-chat")

    page.goto(f"{vlm_live.web.url}/servers/{embedder.pk}/")
    assert page.locator("form.chat-form").count() == 0, "an embedding model does not chat"
    page.fill("#try-first", "the cat")
    page.fill("#try-second", "the cat")
    page.click("#try-run")
    page.wait_for_selector(".try-similarity")
    assert abs(float(page.inner_text(".try-similarity")) - 1.0) < 1e-3, "a text is most like itself"
    screenshots(page, "vlm-server-embeddings")

    page.goto(f"{vlm_live.web.url}/servers/{reranker.pk}/")
    page.fill("#try-first", "cat")
    page.fill("#try-second", "the cat\na dog\n\napple tree")
    page.click("#try-run")
    page.wait_for_selector(".try-ranking li")
    assert page.locator(".try-ranking li").count() == 3
    records = UsageRecord.objects.filter(user=member, api_key=None, status=200)
    wait_for(lambda: records.count() == 3, timeout=20, what="three records, signed in without a key")
    assert set(records.values_list("api", flat=True)) == {"chat", "embeddings", "rerank"}
