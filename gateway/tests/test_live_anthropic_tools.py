"""Anthropic Messages with tools through `/v1/`: the real `anthropic` client, gunicorn and a real
`mlx_lm.server` on a scripted model (testing/scriptedmodel.py) that calls a tool, then answers;
and `count_tokens` against the model's own count."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from accounts.models import User
from gateway.anthropic_request import messages_to_chat
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from gateway.token_pool import as_the_server_renders
from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall
from testing.web import WebServer

pytestmark = pytest.mark.mlx

CALL = ToolCall("get_weather", {"city": "Paris"})
TOOLS: list[ToolParam] = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "cache_control": {"type": "ephemeral"},
    }
]
QUESTION: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
SYSTEM: list[Any] = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0.abc; cch=1;"},
    {"type": "text", "text": "You are a helpful agent.", "cache_control": {"type": "ephemeral"}},
]
# What Claude Code sends beside the conversation: accepted, and changing nothing
CLAUDE_CODE_FIELDS: dict[str, Any] = {
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "medium"},
    "metadata": {"user_id": "someone"},
}


@dataclass
class Agent:
    client: anthropic.Anthropic
    model: Path


@pytest.fixture
def agent(
    supervisor_process: Any, scripted_model: Callable[..., Path], tmp_path: Path, make_user: Callable[..., User]
) -> Iterator[Agent]:
    supervisor_process.start()
    model = scripted_model(CALL)
    start_profile(model, "agent", supervisor_process)
    secret = key_create(user=make_user("member@example.com"), name="k").secret
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        client = anthropic.Anthropic(base_url=web.url, api_key=secret, max_retries=0, timeout=60)
        yield Agent(client=client, model=model)
    finally:
        web.stop()


def _after(tool_use: dict[str, Any], result: Any, **extra: Any) -> list[Any]:
    return [
        *QUESTION,
        {"role": "assistant", "content": [tool_use]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_use["id"], "content": result, **extra},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]


def test_a_tool_loop_whole(agent: Agent) -> None:
    first = agent.client.messages.create(
        model="agent", system=SYSTEM, messages=QUESTION, tools=TOOLS, max_tokens=16, extra_body=CLAUDE_CODE_FIELDS
    )
    assert first.stop_reason == "tool_use" and first.model == "agent"
    (block,) = first.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_")

    second = agent.client.messages.create(
        model="agent",
        system=SYSTEM,
        messages=_after(block.model_dump(), "Sunny, 21 °C"),
        tools=TOOLS,
        tool_choice={"type": "auto"},
        max_tokens=16,
    )
    assert second.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None)) for b in second.content] == [("text", DEFAULT_ANSWER)]


def test_a_tool_loop_streamed(agent: Agent) -> None:
    with agent.client.messages.stream(
        model="agent", system=SYSTEM, messages=QUESTION, tools=TOOLS, max_tokens=16, extra_body=CLAUDE_CODE_FIELDS
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"} and block.id.startswith("toolu_")
    starts = [e for e in events if e.type == "content_block_start"]
    assert [(e.index, e.content_block.type) for e in starts] == [(0, "tool_use")]
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert deltas and all(d.type == "input_json_delta" for d in deltas)
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0

    results = [{"type": "text", "text": "No such city."}]
    with agent.client.messages.stream(
        model="agent", messages=_after(block.model_dump(), results, is_error=True), tools=TOOLS, max_tokens=16
    ) as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None)) for b in answer.content] == [("text", DEFAULT_ANSWER)]


def test_count_tokens_is_the_model_servers_own_count(agent: Agent) -> None:
    from transformers import AutoTokenizer

    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    conversations: list[tuple[list[MessageParam], list[ToolParam]]] = [
        (QUESTION, TOOLS),
        (QUESTION, []),
        (_after(tool_use, "Sunny"), TOOLS),
    ]
    tokenizer = AutoTokenizer.from_pretrained(str(agent.model))
    for messages, tools in conversations:
        counted = agent.client.messages.count_tokens(model="agent", system=SYSTEM, messages=messages, tools=tools)
        answered = agent.client.messages.create(
            model="agent", system=SYSTEM, messages=messages, tools=tools, max_tokens=16
        )
        assert counted.input_tokens == answered.usage.input_tokens  # what mlx_lm.server read
        chat = messages_to_chat({"system": SYSTEM, "messages": messages, "tools": tools, "max_tokens": 1})
        rendered = as_the_server_renders(chat["messages"])
        encoded: Any = tokenizer.apply_chat_template(rendered, tools=chat.get("tools"), add_generation_prompt=True)
        assert counted.input_tokens == len(encoded["input_ids"])
    # Claude Code's billing block is not part of what the model reads; the rest of the system is
    plain = agent.client.messages.count_tokens(model="agent", system=SYSTEM[1:], messages=QUESTION)
    billed = agent.client.messages.count_tokens(model="agent", system=SYSTEM, messages=QUESTION)
    bare = agent.client.messages.count_tokens(model="agent", messages=QUESTION)
    assert billed.input_tokens == plain.input_tokens > bare.input_tokens


def test_count_tokens_refuses_like_messages(agent: Agent) -> None:
    stranger = anthropic.Anthropic(base_url=str(agent.client.base_url), api_key="sk-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        stranger.messages.count_tokens(model="agent", messages=QUESTION)
    with pytest.raises(anthropic.NotFoundError):
        agent.client.messages.count_tokens(model="nobody", messages=QUESTION)
    orphan: Any = [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        agent.client.messages.count_tokens(model="agent", messages=orphan)
    assert "messages.0.content.0.tool_use_id: required" in str(caught.value)


def test_a_call_whose_arguments_are_not_an_object_is_a_clear_error(
    agent: Agent, supervisor_process: Any, scripted_model: Callable[..., Path]
) -> None:
    odd: Any = "Paris"  # the model writes {"name": ..., "arguments": "Paris"}
    start_profile(scripted_model(ToolCall("get_weather", odd)), "odd", supervisor_process)
    with pytest.raises(anthropic.InternalServerError) as caught:
        agent.client.messages.create(model="odd", messages=QUESTION, tools=TOOLS, max_tokens=16)
    assert caught.value.status_code == 502 and "not a JSON object" in str(caught.value)
    with (
        pytest.raises(anthropic.APIStatusError, match="not a JSON object"),
        agent.client.messages.stream(model="odd", messages=QUESTION, tools=TOOLS, max_tokens=16) as stream,
    ):
        stream.get_final_message()
    # the model server and its generation thread live on
    answer = agent.client.messages.create(model="odd", messages=QUESTION, max_tokens=16)
    assert [(b.type, getattr(b, "text", None)) for b in answer.content] == [("text", DEFAULT_ANSWER)]
