"""The Responses API translation, pure: a request as Codex CLI and the openai SDK send it becomes a
chat completions body; the model server's answer (whole, or chunks as mlx-lm streams them) becomes
a `response` and events that the openai SDK's own models validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from gateway.errors import GatewayError
from gateway.responses_request import IGNORED_FIELDS, responses_to_chat
from gateway.responses_stream import ResponseStream, chat_to_response

EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command.",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}},
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
        {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
    ],
}


def codex_body(**changes: Any) -> dict[str, Any]:
    """The shape of Codex CLI 0.169's first request (logged from the real CLI)."""
    body: dict[str, Any] = {
        "model": "tiny",
        "stream": True,
        "input": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Be a coder."}],
            },
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Skills."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "write done to out.txt"}]},
        ],
        "tools": [EXEC, AGENTS, {"type": "web_search", "external_web_access": True}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a2",
        "client_metadata": {"x-codex-installation-id": "e3b4"},
    }
    return {**body, **changes}


def refused(body: dict[str, Any]) -> str:
    with pytest.raises(GatewayError) as caught:
        responses_to_chat(body)
    assert caught.value.status == 400
    return caught.value.message


def test_codex_request_becomes_chat() -> None:
    chat = responses_to_chat(codex_body())
    assert chat["messages"] == [
        {"role": "system", "content": "Be a coder.\n\nSkills."},
        {"role": "user", "content": "<env/>"},
        {"role": "user", "content": "write done to out.txt"},
    ]
    assert chat["stream"] is True
    names = [t["function"]["name"] for t in chat["tools"]]
    # web_search and the custom tool left out; the namespace flattened, the clashing name qualified
    assert names == ["exec_command", "close_agent", "multi_agent_v1.exec_command"]
    assert chat["tools"][0]["function"]["parameters"] == EXEC["parameters"]
    assert set(chat) == {"messages", "stream", "tools"}


def test_tool_loop_items() -> None:
    chat = responses_to_chat(
        {
            "model": "tiny",
            "instructions": "Be terse.",
            "input": [
                {"role": "user", "content": "Run it"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
                {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
                {
                    "type": "function_call",
                    "call_id": "c2",
                    "name": "close_agent",
                    "namespace": "multi_agent_v1",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "ok"}]},
            ],
            "tools": [EXEC, AGENTS],
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Run it"},
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd": "ls"}'}},
                {"id": "c2", "type": "function", "function": {"name": "close_agent", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "c2", "content": "ok"},
    ]
    assert (chat["max_tokens"], chat["temperature"], chat["top_p"]) == (50, 0.2, 0.9)


def test_string_input_image_and_tool_choice() -> None:
    assert responses_to_chat({"model": "m", "input": "Hi"})["messages"] == [{"role": "user", "content": "Hi"}]
    image = "data:image/png;base64,iVBORw0KGgo="
    chat = responses_to_chat(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What?"}, {"type": "input_image", "image_url": image}],
                }
            ],
        }
    )
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    assert "tools" not in responses_to_chat({"model": "m", "input": "x", "tools": [EXEC], "tool_choice": "none"})
    chosen = responses_to_chat(
        {
            "model": "m",
            "input": "x",
            "tools": [EXEC, AGENTS],
            "tool_choice": {"type": "function", "name": "close_agent"},
        }
    )
    assert [t["function"]["name"] for t in chosen["tools"]] == ["close_agent"]
    for name in IGNORED_FIELDS:
        responses_to_chat({"model": "m", "input": "x", name: "anything"})  # accepted, whatever it holds
    responses_to_chat({"model": "m", "input": "x", "store": True, "text": {"format": {"type": "text"}}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id: this server keeps no responses; send the whole"),
        ({"background": True}, "background:"),
        ({"frobnicate": 1}, "frobnicate: unknown parameter"),
        ({"input": []}, "input: required"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input.0.role:"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id: required"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1"}]}, "input.0.arguments:"),
        (
            {"input": [{"type": "function_call_output", "call_id": "zz", "output": "x"}]},
            "input.0.call_id: no function_call",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0: this server keeps no responses"),
        ({"input": [{"type": "computer_call_output"}]}, "input.0.type:"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://127.0.0.1/x.png"}]}]},
            "input.0.content.0.image_url: a URL; send the data inline",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            "input.0.content.0.image_url: required",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]},
            "input.0.content.0.type:",
        ),
        ({"input": [{"role": "user", "content": 7}]}, "input.0.content: must be"),
        (
            {"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format: 'json_schema' is not supported",
        ),
        ({"input": "x", "text": {"format": {"type": "json_object"}}}, "text.format:"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools.0.name: required"),
        ({"input": "x", "tools": [EXEC, EXEC]}, "tools.1.name: 'exec_command' names two tools"),
        ({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools.0.parameters:"),
        ({"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": 3}]}, "tools.0.tools:"),
        ({"input": "x", "tools": ["web_search"]}, "tools.0: must be an object"),
        ({"input": "x", "tools": [EXEC], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name:"),
        ({"input": "x", "tool_choice": "sometimes"}, "tool_choice:"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens:"),
        ({"input": "x", "temperature": 3}, "temperature:"),
        ({"input": "x", "instructions": 5}, "instructions:"),
    ],
)
def test_refusals_name_the_field(change: dict[str, Any], message: str) -> None:
    assert message in refused({"model": "m", "input": "x", **change})


SSE_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def parse_events(raw: bytes) -> list[Any]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        kind, data = block.split("\n")
        parsed = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {parsed['type']}"
        events.append(SSE_EVENTS.validate_python(parsed))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


def mlx_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def call_chunk(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return mlx_chunk({"tool_calls": [call]})


def streamed(
    body: dict[str, Any], chunks: list[dict[str, Any]], usage: tuple[int, int] = (12, 5)
) -> tuple[list[Any], bytes]:
    stream = ResponseStream(body)
    raw = stream.start() + b"".join(stream.chunk(c) for c in chunks)
    raw += stream.chunk(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    )
    raw += stream.finish(*usage)
    return parse_events(raw), raw


def test_text_whole_and_streamed_have_one_shape() -> None:
    body = {"model": "GPT-Tiny", "input": "Hi", "temperature": 0.5}
    whole = chat_to_response(
        {
            "choices": [{"message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}},
        },
        body,
    )
    parsed = Response.model_validate(whole)
    assert parsed.output_text == "Hello there" and parsed.status == "completed" and parsed.model == "GPT-Tiny"
    assert parsed.usage is not None and (
        parsed.usage.input_tokens,
        parsed.usage.output_tokens,
        parsed.usage.total_tokens,
    ) == (12, 5, 17)
    assert parsed.usage.input_tokens_details.cached_tokens == 4
    assert whole["id"].startswith("resp_") and whole["output"][0]["id"].startswith("msg_")

    events, _raw = streamed(
        body,
        [mlx_chunk({"role": "assistant", "content": "Hello"}), mlx_chunk({"content": " there"}), mlx_chunk({}, "stop")],
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1].response
    assert final.output_text == "Hello there"
    shape = {
        **final.model_dump(),
        "id": None,
        "created_at": None,
        "output": [{**final.output[0].model_dump(), "id": None}],
    }
    expected = {
        **parsed.model_dump(),
        "id": None,
        "created_at": None,
        "output": [{**parsed.output[0].model_dump(), "id": None}],
    }
    assert shape == expected
    assert events[4].item_id == final.output[0].id and events[4].delta == "Hello"


def test_function_call_streamed_whole_or_in_pieces() -> None:
    body = {"model": "tiny", "input": "go", "tools": [EXEC, AGENTS]}
    # mlx-lm: each call whole in one delta, with its index
    whole_calls, _ = streamed(
        body,
        [
            mlx_chunk({"content": "Let me."}),
            call_chunk(0, "u1", "exec_command", '{"cmd": "ls"}'),
            call_chunk(1, "u2", "close_agent", "{}"),
            mlx_chunk({}, "tool_calls"),
        ],
    )
    # OpenAI's way: the first piece names the call, the next ones carry only arguments
    pieces, _ = streamed(
        body,
        [
            mlx_chunk({"content": "Let me."}),
            call_chunk(0, "u1", "exec_command", ""),
            mlx_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd":'}}]}),
            mlx_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "ls"}'}}]}),
            call_chunk(1, "u2", "close_agent", "{}"),
            mlx_chunk({}, "tool_calls"),
        ],
    )
    for events in (whole_calls, pieces):
        final = events[-1].response
        assert final.status == "completed"
        message, call, agent = final.output
        assert message.type == "message" and message.content[0].text == "Let me."
        assert (call.type, call.call_id, call.name, json.loads(call.arguments)) == (
            "function_call",
            "u1",
            "exec_command",
            {"cmd": "ls"},
        )
        assert call.id.startswith("fc_") and call.status == "completed"
        assert (agent.name, agent.namespace) == ("close_agent", "multi_agent_v1")  # back in its namespace
        done = [e for e in events if e.type == "response.output_item.done"]
        assert [e.item for e in done] == final.output  # Codex reads the items from these events
        args_done = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert [e.arguments for e in args_done] == [call.arguments, "{}"]
        deltas = "".join(
            e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.item_id == call.id
        )
        assert deltas == call.arguments

    whole = Response.model_validate(
        chat_to_response(
            {
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "u1",
                                    "type": "function",
                                    "function": {"name": "multi_agent_v1.exec_command", "arguments": "{}"},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
            body,
        )
    )
    (call,) = whole.output
    assert call.type == "function_call" and (call.name, call.namespace, call.call_id) == (
        "exec_command",
        "multi_agent_v1",
        "u1",
    )
    assert whole.output_text == ""


def test_length_is_incomplete_and_failure_is_failed() -> None:
    body = {"model": "tiny", "input": "Hi", "max_output_tokens": 2}
    whole = Response.model_validate(
        chat_to_response({"choices": [{"message": {"content": "Hel"}, "finish_reason": "length"}]}, body)
    )
    assert whole.status == "incomplete" and whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens" and whole.max_output_tokens == 2
    events, _ = streamed(body, [mlx_chunk({"content": "Hel"}, "length")])
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"

    stream = ResponseStream(body)
    raw = stream.start() + stream.chunk(mlx_chunk({"content": "Hel"})) + stream.failed("The model server stopped.")
    failed = parse_events(raw)[-1]
    assert failed.type == "response.failed" and failed.response.error.message == "The model server stopped."
    assert failed.response.error.code == "server_error"


def test_the_docs_list_every_ignored_field() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    listed = docs.split("**Accepted and ignored**", 1)[1].split("\n- ", 1)[0]
    assert {name for name in IGNORED_FIELDS if f"`{name}`" not in listed} == set()


JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [None], {}, {"type": "x"}]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        found += _paths(child, (*path, key))
    return found


def _replaced(value: Any, path: tuple[Any, ...], junk: Any) -> Any:
    if not path:
        return junk
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], junk)
    return copy


def test_any_value_anywhere_is_translated_or_refused_never_a_crash() -> None:
    """Every field and item of a full request replaced in turn by values of every JSON type: the
    answer is a translation or a GatewayError (a 400), never another exception (a 500)."""
    body = codex_body(
        instructions="Be brief.",
        max_output_tokens=8,
        temperature=0.5,
        tool_choice={"type": "function", "name": "exec_command"},
        text={"format": {"type": "text"}},
    )
    body["input"] = [
        *body["input"],
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "a"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]},
    ]
    for path in _paths(body):
        for junk in JUNK:
            changed = _replaced(body, path, junk)
            try:
                responses_to_chat(changed)
                ResponseStream(changed).start()
            except GatewayError as error:
                assert error.status == 400 and error.message.split(":")[0], (path, junk)


def test_a_reasoning_models_thinking_is_a_reasoning_item() -> None:
    """mlx-lm puts a thinking model's thoughts in `reasoning` (whole) or delta `reasoning` (streamed)."""
    body = {"model": "qwen", "input": "Why?", "reasoning": {"effort": "low"}}
    events, _ = streamed(
        body,
        [
            mlx_chunk({"reasoning": "Hmm, "}),
            mlx_chunk({"reasoning": "because."}),
            mlx_chunk({"content": "Because."}, "stop"),
        ],
    )
    final = events[-1].response
    thought, message = final.output
    assert thought.type == "reasoning" and thought.content[0].text == "Hmm, because." and thought.summary == []
    assert message.type == "message" and final.output_text == "Because."
    assert [e.delta for e in events if e.type == "response.reasoning_text.delta"] == ["Hmm, ", "because."]
    assert [e.output_index for e in events if e.type == "response.output_item.done"] == [0, 1]
    whole = Response.model_validate(
        chat_to_response(
            {"choices": [{"message": {"content": "Because.", "reasoning": "Hmm, because."}, "finish_reason": "stop"}]},
            body,
        )
    )
    assert [item.type for item in whole.output] == ["reasoning", "message"] and whole.output_text == "Because."
