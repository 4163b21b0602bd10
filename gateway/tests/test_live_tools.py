"""OpenAI chat completions with tools through `/v1/`, with the real `openai` client, gunicorn and a
real `mlx_lm.server` on a scripted model (testing/scriptedmodel.py) that calls a tool, then answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from accounts.models import User
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall
from testing.web import WebServer

pytestmark = pytest.mark.mlx

CALL = ToolCall("get_weather", {"city": "Paris"})
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(
    supervisor_process: Any, scripted_model: Callable[..., Path], tmp_path: Path, make_user: Callable[..., User]
) -> Iterator[openai.OpenAI]:
    supervisor_process.start()
    start_profile(scripted_model(CALL), "agent", supervisor_process)
    secret = key_create(user=make_user("member@example.com"), name="k").secret
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        yield openai.OpenAI(base_url=web.url + "/v1", api_key=secret, max_retries=0, timeout=60)
    finally:
        web.stop()


def _answer_after(call_id: str, arguments: str) -> list[ChatCompletionMessageParam]:
    return [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 °C"},
    ]


def test_a_tool_loop_whole(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="agent", messages=QUESTION, tools=TOOLS, max_tokens=16)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and first.model == "agent"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    second = client.chat.completions.create(
        model="agent", messages=_answer_after(call.id, call.function.arguments), tools=TOOLS, max_tokens=16
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == DEFAULT_ANSWER and not second.choices[0].message.tool_calls


def test_a_tool_loop_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="agent",
            messages=QUESTION,
            tools=TOOLS,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls if c.function] == ["get_weather"]
    arguments = "".join(c.function.arguments or "" for c in calls if c.function)
    assert json.loads(arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert {chunk.model for chunk in chunks} == {"agent"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    answer = client.chat.completions.create(
        model="agent", messages=_answer_after(calls[0].id or "call_1", arguments), tools=TOOLS, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)
    assert text == DEFAULT_ANSWER


def test_without_tools_the_model_answers_in_words(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model="agent", messages=QUESTION, max_tokens=16)
    assert chat.choices[0].message.content == DEFAULT_ANSWER and chat.choices[0].finish_reason == "stop"


def test_the_model_list_says_the_model_takes_tools(client: openai.OpenAI) -> None:
    assert (client.models.retrieve("agent").model_extra or {})["capabilities"] == [
        "chat",
        "completions",
        "messages",
        "responses",
        "tools",
    ]
