"""The gateway with the real `openai` and `anthropic` clients against gunicorn and a real
`mlx_lm.server` on the tiny model: every API, streamed and not, and every refusal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import anthropic
import openai
import pytest
from django.utils import timezone
from openai.types.chat import ChatCompletionMessageParam

from accounts.models import UserStatus
from gateway.models import ApiKey, UsageRecord
from gateway.services import key_revoke
from gateway.tests.conftest import Live, start_profile
from library.local import read_config
from profiles.models import ServerProfile
from testing.net import free_port
from testing.supervisor import wait_for
from testing.web import HttpClient

pytestmark = pytest.mark.mlx
PASSWORD = "correct-horse-battery-42"


NO_KEY = "<no key>"


def oai(live: Live, key: str | None = None) -> openai.OpenAI:
    if key == NO_KEY:  # the SDK always sends its key: each call takes the header away (`no_key`)
        return openai.OpenAI(base_url=live.base_url, api_key="-", max_retries=0)
    return openai.OpenAI(base_url=live.base_url, api_key=key or live.secret, max_retries=0, timeout=60)


def ant(live: Live, key: str | None = None) -> anthropic.Anthropic:
    if key == NO_KEY:
        return anthropic.Anthropic(base_url=live.web.url, api_key=None, max_retries=0)
    return anthropic.Anthropic(base_url=live.web.url, api_key=key or live.secret, max_retries=0, timeout=60)


def test_every_api_streamed_and_not(live: Live) -> None:
    client = oai(live)
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {"tiny"}
    assert (listed["tiny"].model_extra or {})["state"] == "running"

    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8)
    assert chat.model == "tiny"
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert isinstance(chat.choices[0].message.content, str)

    # by alias, case-insensitively, streamed: the text arrives in several chunks
    chunks = list(
        client.chat.completions.create(
            model="GPT-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True
        )
    )
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    # A prompt of distinct in-vocabulary tokens: mlx-lm's server fails ("empty prompt") on a text
    # prompt that its prompt cache already holds whole, as unknown words (all <unk>) may be.
    text = client.completions.create(model="tiny", prompt="a b c d e f g", max_tokens=8)
    assert text.usage is not None and text.usage.completion_tokens > 0

    message = ant(live).messages.create(
        model="claude-tiny",
        system="You are terse.",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
        max_tokens=8,
        extra_body={"temperature": 0.5},
        stop_sequences=["\n\n\n"],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0

    with ant(live).messages.stream(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=8) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    raw_kinds = [
        k
        for k in kinds
        if k
        in {
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        }
    ]
    assert raw_kinds[:2] == ["message_start", "content_block_start"]
    assert raw_kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in raw_kinds
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0

    # each request recorded, with tokens and timings
    wait_for(lambda: UsageRecord.objects.filter(user=live.user).count() == 5, timeout=20, what="5 usage records")
    records = list(UsageRecord.objects.filter(user=live.user).order_by("created_at"))
    assert [r.api for r in records] == ["chat", "chat", "completions", "messages", "messages"]
    assert all(r.status == 200 and r.completion_tokens and r.duration_ms > 0 for r in records)
    assert all(r.profile_id == live.profile.pk for r in records)
    streamed = records[1]
    assert streamed.stream and streamed.ttft_ms is not None and streamed.tokens_per_second
    assert streamed.prompt_tokens  # from the server's usage, asked for by the gateway

    # the Usage page shows them to their owner, and nothing of them to another member
    total = sum(r.completion_tokens or 0 for r in records)
    owner = HttpClient(live.web.url)
    owner.login(live.user.email, PASSWORD)
    page = owner.get("/usage/").text
    assert 'id="usage-requests">5<' in page and f'id="usage-completion-tokens">{total:,}<' in page
    other = live.make_user("someone@example.com")
    stranger = HttpClient(live.web.url)
    stranger.login(other.email, PASSWORD)
    assert 'id="usage-requests">0<' in stranger.get("/usage/").text


def openai_error(call: object) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def anthropic_error(call: object) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_refusals_in_each_apis_shape(live: Live) -> None:
    def chat(client: openai.OpenAI, model: str = "tiny", headers: Any = None) -> object:
        return lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2, extra_headers=headers
        )

    def msg(client: anthropic.Anthropic, model: str = "tiny", headers: Any = None) -> object:
        return lambda: client.messages.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=2, extra_headers=headers
        )

    def both(key: str, status: int, openai_type: type, anthropic_type: type, model: str = "tiny") -> tuple[str, str]:
        o = openai_error(chat(oai(live, key), model, {"Authorization": openai.Omit()} if key == NO_KEY else None))
        a = anthropic_error(msg(ant(live, key), model, {"Authorization": anthropic.Omit()} if key == NO_KEY else None))
        assert (o.status_code, a.status_code) == (status, status)
        assert isinstance(o, openai_type) and isinstance(a, anthropic_type), (type(o), type(a))
        assert isinstance(o.body, dict) and set(o.body) >= {"message", "type", "code"}  # the SDK unwraps "error"
        body = cast(dict[str, Any], a.body)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return str(o.body["message"]), body["error"]["message"]

    message, _ = both(NO_KEY, 401, openai.AuthenticationError, anthropic.AuthenticationError)
    assert "Missing API key" in message
    both("mlxm_wrong", 401, openai.AuthenticationError, anthropic.AuthenticationError)
    both("mlxm_wrong", 401, openai.AuthenticationError, anthropic.AuthenticationError)

    revoked = live.new_secret()
    key_revoke(key=ApiKey.objects.get(user=live.user, revoked_at=None, name="test"), by=live.user)
    both(revoked, 401, openai.AuthenticationError, anthropic.AuthenticationError)

    expired = live.new_secret(expires_at=timezone.now() - timedelta(minutes=1))
    both(expired, 401, openai.AuthenticationError, anthropic.AuthenticationError)

    other = live.make_user("bob@example.com")
    bobs = live.new_secret(user=other)
    assert oai(live, bobs).models.list().data  # works while bob is approved ...
    other.status = UserStatus.DISABLED
    other.save(update_fields=["status"])
    both(bobs, 401, openai.AuthenticationError, anthropic.AuthenticationError)  # ... not the next request
    other.status = UserStatus.PENDING
    other.save(update_fields=["status"])
    both(bobs, 401, openai.AuthenticationError, anthropic.AuthenticationError)

    elsewhere = ServerProfile.objects.create(name="elsewhere", model="/nowhere", port=free_port())
    limited = live.new_secret(profiles=[elsewhere])
    message, _ = both(limited, 403, openai.PermissionDeniedError, anthropic.PermissionDeniedError)
    assert "tiny" in message
    assert [m.id for m in oai(live, limited).models.list().data] == ["elsewhere"]

    message, _ = both(live.secret, 404, openai.NotFoundError, anthropic.NotFoundError, model="gpt-5")
    assert "tiny" in message and "elsewhere" in message  # a few known names

    o = openai_error(chat(oai(live), "elsewhere"))
    assert o.status_code == 503 and "Start" in str(cast(dict[str, Any], o.body)["message"])
    assert o.response.headers["Retry-After"]
    a = anthropic_error(msg(ant(live), "elsewhere"))
    assert a.status_code == 503 and a.response.headers["Retry-After"]

    # a malformed body: 400 in both shapes
    o = openai_error(lambda: oai(live).chat.completions.create(model="tiny", messages="not a list", max_tokens=2))  # type: ignore[arg-type]
    assert o.status_code == 400 and isinstance(o, openai.BadRequestError)
    robot: Any = [{"role": "robot", "content": "x"}]
    a = anthropic_error(lambda: ant(live).messages.create(model="tiny", messages=robot, max_tokens=2))
    assert a.status_code == 400 and isinstance(a, anthropic.BadRequestError)

    # deleted user: the key goes with them
    carol = live.make_user("carol@example.com")
    carols = live.new_secret(user=carol)
    carol.delete()
    both(carols, 401, openai.AuthenticationError, anthropic.AuthenticationError)


def test_body_model_naming_another_local_model_is_never_passed_through(live: Live, tiny_model: object) -> None:
    """mlx-lm's server would load whatever `model` names (past the supervisor's memory check);
    the gateway sends the loaded model's own key, and extra loading fields are dropped."""
    client = oai(live)
    # `tiny_model` is a real local model folder the server could load; a client naming it as the
    # model gets a 404 (it is not a profile) and the request never reaches the server.
    error = openai_error(
        lambda: client.chat.completions.create(
            model=str(tiny_model), messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    )
    assert error.status_code == 404
    # naming a profile while smuggling loading fields: answered by what the server loaded
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "x"}],
        max_tokens=2,
        extra_body={"draft_model": "/etc", "adapters": "/etc"},
    )
    assert reply.model == "tiny"


def test_second_model_by_alias(live: Live, tiny_model: object, supervisor_process: object) -> None:
    second = start_profile(tiny_model, "second", supervisor_process, aliases="other")  # type: ignore[arg-type]
    reply = oai(live).chat.completions.create(model="OTHER", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert reply.model == "OTHER"  # the name the client sent; the usage is recorded under the profile
    wait_for(lambda: UsageRecord.objects.filter(profile=second).exists(), timeout=20, what="a record for second")


def test_options_that_would_kill_the_generation_thread_cannot_take_the_model_down(live: Live) -> None:
    """mlx-lm's one generation thread dies on a top_k larger than the vocabulary, a stop that is not text, a logit_bias token beyond the vocabulary or a seed out of
    range, and its server then answers 503 for ever. Through the gateway such a top_k means 'no
    top-k' and the others are refused naming the option, so a key holder cannot break a model
    everyone shares; options it can use still reach it."""
    client = oai(live)
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
    vocabulary = read_config(Path(live.profile.model))["vocab_size"]
    for _ in range(2):
        chat = client.chat.completions.create(
            model="tiny", messages=hello, max_tokens=4, temperature=0.8, extra_body={"top_k": 100_000}
        )
        # A sampled answer may be empty (the tiny model can draw its end token first): what
        # counts is that it was answered, not refused or left hanging by a dead thread.
        assert chat.choices[0].finish_reason in ("stop", "length")
    message = ant(live).messages.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        extra_body={"temperature": 0.8, "top_k": 100_000},
    )
    assert message.stop_reason in ("end_turn", "max_tokens")
    for option, value in [
        ("top_k", -3),
        ("stop", [["x"]]),
        ("stop", [1]),
        ("logit_bias", {"99999999999999999999": 1}),
        ("logit_bias", {str(vocabulary): 1}),  # one past the last token
        ("seed", 2**64),
    ]:
        with pytest.raises(openai.BadRequestError, match=f"{option}:"):
            client.chat.completions.create(model="tiny", messages=hello, max_tokens=4, extra_body={option: value})
        with pytest.raises(openai.BadRequestError, match=f"{option}:"):
            client.completions.create(model="tiny", prompt="Hello", max_tokens=4, extra_body={option: value})
    # What the model can use goes through.
    last = str(vocabulary - 1)
    biased = client.completions.create(
        model="tiny", prompt="Hello", max_tokens=3, temperature=0.0, logit_bias={last: 100}, seed=7, stop=["\n\n"]
    )
    assert biased.choices[0].finish_reason in ("stop", "length")
    assert biased.usage is not None and biased.usage.completion_tokens >= 1
    profile = ServerProfile.objects.get(name="tiny")
    assert profile.server.state == "running" and profile.server.restart_count == 0


def test_an_answer_asked_longer_than_the_context_leaves_is_capped_to_that_room(live: Live) -> None:
    """The tiny model's context is 256 tokens and "hello" is one token: after a 200-token prompt an
    answer has 56 left, whatever max_tokens says (the server would run on past its context)."""
    client = oai(live)
    completion = client.completions.create(
        model="tiny", prompt=" ".join(["hello"] * 200), max_tokens=1000, temperature=0.0
    )
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 56, completion.usage
    short = client.completions.create(model="tiny", prompt="hello", max_tokens=3, temperature=0.0)
    assert short.usage is not None and short.usage.completion_tokens <= 3


def test_the_model_is_named_as_the_client_sent_it_and_n_above_1_is_refused(live: Live) -> None:
    client = oai(live)
    chunks = list(
        client.chat.completions.create(
            model="GPT-4o-mini",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) >= 3 and {c.model for c in chunks} == {"GPT-4o-mini"}  # never "default_model"
    whole = client.completions.create(model="tiny", prompt="a b c d", max_tokens=2)
    assert whole.model == "tiny"
    streamed = list(client.completions.create(model="Claude-Tiny", prompt="a b c d e", max_tokens=3, stream=True))
    assert streamed and {c.model for c in streamed} == {"Claude-Tiny"}

    for n in (2, 0, "2"):
        error = openai_error(
            lambda n=n: client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2, n=n
            )
        )
        assert error.status_code == 400 and str(cast(dict[str, Any], error.body)["message"]).startswith("n: ")
    one = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2, n=1)
    assert len(one.choices) == 1


def test_logprobs_name_each_token_by_its_text(live: Live) -> None:
    chat = oai(live).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=6, logprobs=True
    )
    content = (chat.choices[0].logprobs and chat.choices[0].logprobs.content) or []
    assert len(content) == chat.usage.completion_tokens if chat.usage else False
    vocabulary = set(json.loads((Path(live.profile.model) / "tokenizer.json").read_text())["model"]["vocab"])
    for entry in content:
        assert entry.token in vocabulary and entry.bytes == list(entry.token.encode())
        assert entry.logprob <= 0 and entry.top_logprobs == []
    spoken = [entry.token for entry in content if entry.token != "</s>"]
    assert " ".join(spoken) == chat.choices[0].message.content  # the word-level tokenizer joins by spaces

    with_top = oai(live).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=3, logprobs=True, top_logprobs=2
    )
    for entry in (with_top.choices[0].logprobs and with_top.choices[0].logprobs.content) or []:
        assert len(entry.top_logprobs) == 2 and all(top.token in vocabulary for top in entry.top_logprobs)
