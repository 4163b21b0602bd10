"""The Anthropic translation as pure functions: tools, tool_use and tool_result blocks, system text
anywhere, the fields accepted and ignored or refused, and the answer (whole and streamed) back,
read by the real anthropic SDK's own stream accumulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from gateway.anthropic_request import BILLING_HEADER, IGNORED_FIELDS, messages_to_chat, wants_thinking
from gateway.errors import GatewayError
from gateway.translate import MessageStream, chat_to_message

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": {"type": "ephemeral"},
}


def request(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "max_tokens": 16, "messages": messages, **fields}


def refusal(body: dict[str, Any]) -> str:
    with pytest.raises(GatewayError) as caught:
        messages_to_chat(body)
    assert caught.value.status == 400
    return caught.value.message


def test_a_whole_tool_loop_translates_in_order() -> None:
    body = request(
        [
            {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "x"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "route"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    chat = messages_to_chat(body)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "The weather in a city.",
            },
        }
    ]
    assert chat["tool_choice"] == "auto"
    assert chat["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no\n\nroute"},
        {"role": "user", "content": "And tomorrow?"},
    ]


@pytest.mark.parametrize(
    ("choice", "upstream"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_has_its_openai_counterpart(choice: dict[str, Any], upstream: Any) -> None:
    chat = messages_to_chat(request([{"role": "user", "content": "x"}], tools=[WEATHER], tool_choice=choice))
    assert chat["tool_choice"] == upstream and chat["tools"]


def test_tool_choice_none_leaves_the_tools_out() -> None:
    chat = messages_to_chat(request([{"role": "user", "content": "x"}], tools=[WEATHER], tool_choice={"type": "none"}))
    assert "tools" not in chat and chat["tool_choice"] == "none"


def test_system_anywhere_without_the_billing_block_and_ignored_fields_accepted() -> None:
    body = request(
        [
            {"role": "system", "content": "Right after the system prompt."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": [{"type": "text", "text": "From here on, be brief."}]},
            {"role": "system", "content": "And polite."},
            {"role": "user", "content": "Bye"},
        ],
        system=[
            {"type": "text", "text": BILLING_HEADER + " cc_version=2.1.328.abc; cc_entrypoint=sdk-cli; cch=1;"},
            {"type": "text", "text": "You are an agent.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        thinking={"type": "adaptive"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        metadata={"user_id": "someone"},
        service_tier="auto",
    )
    assert messages_to_chat(body)["messages"] == [
        {"role": "system", "content": "You are an agent.\n\nRight after the system prompt."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "From here on, be brief.\n\nAnd polite."},
        {"role": "user", "content": "Bye"},
    ]
    assert {"thinking.budget_tokens", "context_management", "metadata", "service_tier"} <= set(IGNORED_FIELDS)


def test_a_deferred_tool_is_seen_once_a_tool_search_returned_it() -> None:
    deferred = {**WEATHER, "defer_loading": True}
    search = {"name": "ToolSearch", "input_schema": {"type": "object"}}
    asked: list[dict[str, Any]] = [{"role": "user", "content": "Weather?"}]
    chat = messages_to_chat(request(asked, tools=[search, deferred]))
    assert [t["function"]["name"] for t in chat["tools"]] == ["ToolSearch"]
    found = [
        *asked,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "tool_reference", "tool_name": "get_weather"}],
                }
            ],
        },
    ]
    chat = messages_to_chat(request(found, tools=[search, deferred]))
    assert [t["function"]["name"] for t in chat["tools"]] == ["ToolSearch", "get_weather"]
    assert chat["messages"][-1] == {"role": "tool", "tool_call_id": "t1", "content": "Tool loaded: get_weather"}


@pytest.mark.parametrize(
    ("messages", "fields", "words"),
    [
        ([{"role": "user", "content": "x"}], {"tools": {"name": "a"}}, "tools: must be a list"),
        (
            [{"role": "user", "content": "x"}],
            {"tools": [{"input_schema": {"type": "object"}}]},
            "tools.0.name: required",
        ),
        (
            [{"role": "user", "content": "x"}],
            {"tools": [{"name": "a b", "input_schema": {"type": "object"}}]},
            "tools.0.name",
        ),
        ([{"role": "user", "content": "x"}], {"tools": [{"name": "a"}]}, "tools.0.input_schema: required"),
        ([{"role": "user", "content": "x"}], {"tools": [WEATHER, WEATHER]}, "tools.1.name: 'get_weather' names two"),
        (
            [{"role": "user", "content": "x"}],
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools.0.type",
        ),
        ([{"role": "user", "content": "x"}], {"tool_choice": {"type": "any"}}, "tool_choice: 'any' needs tools"),
        (
            [{"role": "user", "content": "x"}],
            {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "b"}},
            "tool_choice.name",
        ),
        ([{"role": "user", "content": "x"}], {"tool_choice": "auto"}, "tool_choice.type"),
        ([{"role": "user", "content": "x"}], {"mcp_servers": [{"type": "url", "url": "https://x"}]}, "mcp_servers"),
        (
            [{"role": "user", "content": "x"}],
            {"output_config": {"format": {"type": "json_schema"}}},
            "output_config.format",
        ),
        ([{"role": "user", "content": "x"}], {"system": [{"type": "image"}]}, "system.0: must be a text block"),
        ([{"role": "tool", "content": "x"}], {}, "messages.0.role"),
        ([{"role": "user"}], {}, "messages.0.content: required"),
        ([{"role": "user", "content": [{"text": "x"}]}], {}, "messages.0.content.0.type: required"),
        (
            [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            {},
            "messages.0.content.0.type: 'document'",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                    ],
                }
            ],
            {},
            "messages.0.content.0: this model takes no images",
        ),
        (
            [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": "x"}]}],
            {},
            "messages.0.content.0.input: required, an object",
        ),
        (
            [{"role": "assistant", "content": [{"type": "tool_use", "name": "a", "input": {}}]}],
            {},
            "messages.0.content.0.id: required",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
                {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "tool_result", "content": "r"}]},
            ],
            {},
            "messages.2.content.1.tool_use_id: required",
        ),
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}], {}, "answers no tool_use"),
        (
            [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]},
            ],
            {},
            "messages.1.content.0.is_error",
        ),
        (
            [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}],
                },
            ],
            {},
            "messages.1.content.0.content.0: this model takes no images",
        ),
    ],
)
def test_malformed_tools_and_blocks_are_400_naming_the_field(
    messages: list[dict[str, Any]], fields: dict[str, Any], words: str
) -> None:
    assert words in refusal(request(messages, **fields))


def test_an_image_goes_inline_to_a_model_that_takes_images() -> None:
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
    chat = messages_to_chat(
        request([{"role": "user", "content": [{"type": "text", "text": "x"}, block]}]), takes_images=True
    )
    assert chat["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBO"},
    }


def openai_call(call_id: str, name: str, arguments: str, index: int = 0) -> dict[str, Any]:
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_a_whole_answer_with_a_tool_call() -> None:
    chat: dict[str, Any] = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [openai_call("3f2a-b", "get_weather", '{"city": "Paris"}')],
                },
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    message = chat_to_message(chat, model="tiny")
    assert message["content"] == [
        {"type": "tool_use", "id": "toolu_3f2a-b", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert message["stop_reason"] == "tool_use" and message["usage"] == {"input_tokens": 9, "output_tokens": 4}
    chat["choices"][0]["message"]["tool_calls"] = [openai_call("x y", "f", '"a string"')]
    with pytest.raises(GatewayError) as caught:
        chat_to_message(chat, model="tiny")
    assert caught.value.status == 502 and "not a JSON object" in caught.value.message


EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def sdk_message(stream: bytes) -> Any:
    """The message the anthropic SDK rebuilds from the stream (its own accumulator)."""
    snapshot = None
    names = []
    buffers: dict[int, bytes] = {}
    for event in stream.decode().split("\n\n"):
        if not event.strip():
            continue
        name, data = event.split("\n", 1)
        names.append(name.removeprefix("event: "))
        payload = json.loads(data.removeprefix("data: "))
        if payload["type"] != "ping":
            parsed = EVENTS.validate_python(payload)
            snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot, names


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_a_stream_with_text_then_calls_whole_and_in_pieces() -> None:
    translator = MessageStream("tiny")
    out = translator.start()
    out += translator.chunk(chunk({"role": "assistant", "content": "Looking"}))
    out += translator.chunk(chunk({"content": " it up."}))
    # mlx-lm's way: the whole call in one delta
    out += translator.chunk(chunk({"tool_calls": [openai_call("a1", "get_weather", '{"city": "Paris"}', 0)]}))
    # the OpenAI way: the arguments in pieces
    out += translator.chunk(chunk({"tool_calls": [openai_call("b2", "get_weather", '{"ci', 1)]}))
    out += translator.chunk(
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'ty": "Oslo"}'}}]}, "tool_calls")
    )
    out += translator.finish(12, 30)
    message, names = sdk_message(out)
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Looking it up."
    assert (message.content[1].id, message.content[1].input) == ("toolu_a1", {"city": "Paris"})
    assert (message.content[2].id, message.content[2].input) == ("toolu_b2", {"city": "Oslo"})
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 30
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3


def test_a_stream_with_only_a_call_starts_at_block_0_and_a_bad_call_raises() -> None:
    translator = MessageStream("tiny")
    out = translator.start() + translator.chunk(chunk({"tool_calls": [openai_call("a", "f", "{}")]}, "tool_calls"))
    message, _ = sdk_message(out + translator.finish(1, 2))
    assert [(b.type, b.input) for b in message.content] == [("tool_use", {})]

    broken = MessageStream("tiny")
    broken.start()
    broken.chunk(chunk({"tool_calls": [openai_call("a", "f", "[1, 2]")]}))
    with pytest.raises(GatewayError) as caught:
        broken.finish(1, 2)
    assert caught.value.status == 502


def test_reasoning_becomes_a_thinking_block_only_when_asked() -> None:
    whole = {"choices": [{"finish_reason": "stop", "message": {"content": "Yes.", "reasoning": "Hm, yes."}}]}
    assert [b["type"] for b in chat_to_message(whole, model="tiny")["content"]] == ["text"]
    assert chat_to_message(whole, model="tiny", thinking=True)["content"] == [
        {"type": "thinking", "thinking": "Hm, yes.", "signature": ""},
        {"type": "text", "text": "Yes."},
    ]
    for asked, blocks in ((False, ["text"]), (True, ["thinking", "text"])):
        translator = MessageStream("tiny", thinking=asked)
        out = (
            translator.start()
            + translator.chunk(chunk({"reasoning": "Hm,"}))
            + translator.chunk(chunk({"reasoning": " yes."}))
        )
        out += translator.chunk(chunk({"content": "Yes."}, "stop")) + translator.finish(3, 4)
        message, _ = sdk_message(out)
        assert [b.type for b in message.content] == blocks
        assert message.content[-1].text == "Yes."
        if asked:
            assert message.content[0].thinking == "Hm, yes."
    assert wants_thinking({"thinking": {"type": "adaptive"}})
    assert not wants_thinking({"thinking": {"type": "adaptive", "display": "omitted"}})
    assert not wants_thinking({"thinking": {"type": "disabled"}}) and not wants_thinking({})
    assert "thinking: must be an object" in refusal(request([{"role": "user", "content": "x"}], thinking="on"))


def test_a_malformed_call_from_the_server_is_a_502_not_a_crash() -> None:
    for piece in ({"index": 0, "function": "x"}, {"index": 0, "id": 5, "function": {"name": 7, "arguments": 3}}):
        translator = MessageStream("tiny")
        translator.start()
        translator.chunk(chunk({"tool_calls": [piece]}))
        with pytest.raises(GatewayError) as caught:
            translator.finish(1, 1)
        assert caught.value.status == 502 and "without a name" in caught.value.message
    whole = {"choices": [{"message": {"tool_calls": [{"id": "a", "function": ["x"]}]}}]}
    with pytest.raises(GatewayError):
        chat_to_message(whole, model="tiny")


def test_a_stream_without_text_or_calls_still_has_one_text_block() -> None:
    translator = MessageStream("tiny")
    message, _ = sdk_message(translator.start() + translator.chunk(chunk({}, "length")) + translator.finish(3, 0))
    assert [(b.type, b.text) for b in message.content] == [("text", "")]
    assert message.stop_reason == "max_tokens"


def test_the_docs_list_every_ignored_field_with_why() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    for field, why in IGNORED_FIELDS.items():
        assert f"| {why} |" in docs, field
