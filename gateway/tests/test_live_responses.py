"""The Responses API through `/v1/responses` with the real `openai` client, gunicorn and a real
`mlx_lm.server` on a scripted model (testing/scriptedmodel.py) that calls a function, then answers:
text and function calls, whole and streamed, and the refusals."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import FunctionToolParam, Response, ResponseInputParam

from accounts.models import User
from gateway.models import GatewayApi, UsageRecord
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from servers.models import Server
from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall
from testing.supervisor import wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx

CALL = ToolCall("lookup", {"city": "Oslo"})
TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "name": "lookup",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
]
QUESTION: ResponseInputParam = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture
def responses_client(
    supervisor_process: Any, scripted_model: Callable[..., Path], tmp_path: Path, make_user: Callable[..., User]
) -> Iterator[openai.OpenAI]:
    supervisor_process.start()
    start_profile(scripted_model(CALL), "scripted", supervisor_process, aliases="gpt-5-mini")
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        secret = key_create(user=make_user("coder@example.com"), name="cli").secret
        yield openai.OpenAI(base_url=web.url + "/v1", api_key=secret, max_retries=0, timeout=60)
    finally:
        web.stop()


LONG_ANSWER = " ".join(f"w{n}" for n in range(1500))  # long enough to be killed in the middle of it


def _without_ids(response: Response) -> dict[str, Any]:
    shape = response.model_dump()
    for name in ("id", "created_at"):
        shape[name] = None
    shape["usage"]["input_tokens_details"]["cached_tokens"] = None  # the second request finds the prompt cached
    for item in shape["output"]:
        item["id"] = None
        item.pop("parsed_arguments", None)  # the stream helper's ParsedResponse adds these two
        for part in item.get("content") or []:
            part.pop("parsed", None)
        if item.get("call_id"):
            item["call_id"] = None  # the model server names each call anew
    return shape


def test_text_whole_and_streamed(responses_client: openai.OpenAI) -> None:
    whole = responses_client.responses.create(
        model="GPT-5-mini", input="Hello", instructions="Be brief.", max_output_tokens=16
    )
    assert whole.output_text == DEFAULT_ANSWER and whole.status == "completed"
    assert whole.model == "GPT-5-mini" and whole.id.startswith("resp_")
    assert whole.usage is not None and whole.usage.output_tokens > 0 and whole.usage.input_tokens > 0

    with responses_client.responses.stream(
        model="GPT-5-mini", input="Hello", instructions="Be brief.", max_output_tokens=16
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 2 and "".join(deltas) == DEFAULT_ANSWER  # token by token, under gunicorn
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert _without_ids(final) == _without_ids(whole)

    short = responses_client.responses.create(model="scripted", input="Hello", max_output_tokens=2)
    assert short.status == "incomplete" and short.incomplete_details is not None
    assert short.incomplete_details.reason == "max_output_tokens"
    raw = list(responses_client.responses.create(model="scripted", input="Hello", max_output_tokens=2, stream=True))
    assert raw[-1].type == "response.incomplete" and raw[-1].response.output_text == short.output_text

    wait_for(lambda: UsageRecord.objects.filter(api=GatewayApi.RESPONSES).count() == 4, what="4 usage records")
    streamed = UsageRecord.objects.filter(api=GatewayApi.RESPONSES, stream=True).first()
    assert streamed is not None and streamed.status == 200 and streamed.model_name == "scripted"
    assert streamed.prompt_tokens and streamed.completion_tokens


def test_a_function_call_and_its_output_whole(responses_client: openai.OpenAI) -> None:
    first = responses_client.responses.create(
        model="scripted", input=QUESTION, tools=[*TOOLS, {"type": "web_search"}], max_output_tokens=16
    )
    (call,) = first.output
    assert call.type == "function_call" and call.name == "lookup" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.call_id
    assert first.output_text == ""

    answer: ResponseInputParam = [
        *QUESTION,
        call.model_dump(exclude_none=True),  # type: ignore[list-item]  # the SDK's own item, as its docs pass it back
        {"type": "function_call_output", "call_id": call.call_id, "output": "Snow, -3 °C"},
    ]
    second = responses_client.responses.create(model="scripted", input=answer, tools=TOOLS, max_output_tokens=16)
    assert second.output_text == DEFAULT_ANSWER and second.status == "completed"
    assert [item.type for item in second.output] == ["message"]


def test_a_function_call_and_its_output_streamed(responses_client: openai.OpenAI) -> None:
    with responses_client.responses.stream(
        model="scripted", input=QUESTION, tools=TOOLS, max_output_tokens=16
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and call.name == "lookup"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    (done,) = [e for e in events if e.type == "response.output_item.done"]
    parsed = {k: v for k, v in call.model_dump().items() if k != "parsed_arguments"}  # as above
    assert done.item.model_dump() == parsed  # what Codex CLI reads the call from
    whole = responses_client.responses.create(model="scripted", input=QUESTION, tools=TOOLS, max_output_tokens=16)
    assert _without_ids(final) == _without_ids(whole)
    streamed = UsageRecord.objects.filter(api=GatewayApi.RESPONSES, stream=True)
    wait_for(streamed.exists, what="the streamed call's usage record")
    record = streamed.get()
    assert record.ttft_ms is not None and record.completion_tokens  # a call is the first thing generated

    answer: ResponseInputParam = [
        *QUESTION,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Snow, -3 °C"},
    ]
    with responses_client.responses.stream(model="scripted", input=answer, tools=TOOLS, max_output_tokens=16) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert stream.get_final_response().output_text == text == DEFAULT_ANSWER


def test_refusals_in_openai_shape(responses_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as stateful:
        responses_client.responses.create(model="scripted", input="Hi", previous_response_id="resp_123")
    assert "previous_response_id: this server keeps no responses" in stateful.value.message
    with pytest.raises(openai.BadRequestError) as item:
        responses_client.responses.create(
            model="scripted", input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}]
        )
    assert "input.0.call_id" in item.value.message
    with pytest.raises(openai.BadRequestError) as fmt:
        responses_client.responses.create(
            model="scripted", input="Hi", text={"format": {"type": "json_object"}}, stream=True
        )
    assert "text.format" in fmt.value.message
    with pytest.raises(openai.BadRequestError) as image:
        responses_client.responses.create(
            model="scripted",
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "http://127.0.0.1:9/x.png", "detail": "auto"}],
                }
            ],
        )
    assert "input.0.content.0.image_url: a URL" in image.value.message
    inline = "data:image/png;base64,iVBORw0KGgo="
    with pytest.raises(openai.BadRequestError) as text_only:  # the gateway refuses for a text-only model
        responses_client.responses.create(
            model="scripted",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": inline, "detail": "auto"}]}],
        )
    assert "takes no images" in text_only.value.message


def test_model_server_killed_mid_stream_fails_the_response(
    responses_client: openai.OpenAI, supervisor_process: Any, scripted_model: Callable[..., Path]
) -> None:
    profile = start_profile(scripted_model(answer=LONG_ANSWER), "talker", supervisor_process)
    pid = Server.objects.get(profile=profile).pid
    assert pid is not None
    events = iter(responses_client.responses.create(model="talker", input="Talk", max_output_tokens=4000, stream=True))
    assert next(e for e in events if e.type == "response.output_text.delta").delta == "w0"
    os.kill(pid, signal.SIGKILL)
    rest = list(events)
    failed = rest[-1]
    assert failed.type == "response.failed", [e.type for e in rest[-3:]]
    assert failed.response.status == "failed" and failed.response.error is not None
    assert "stopped in the middle" in failed.response.error.message  # Codex reads error.message
    assert not any(e.type == "response.completed" for e in rest)
    wait_for(lambda: UsageRecord.objects.filter(status=502).exists(), timeout=20, what="the failed stream's record")
