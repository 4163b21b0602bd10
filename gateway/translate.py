"""Anthropic's Messages API on top of a model server's OpenAI chat completions: the answer (whole
or streamed) translated back. The request side is gateway/anthropic_request.py."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from gateway.anthropic_request import messages_to_chat
from gateway.errors import GatewayError

__all__ = ["MessageStream", "chat_to_message", "messages_to_chat", "new_message_id", "sse"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
USABLE_ID = re.compile(r"^[a-zA-Z0-9_-]{1,100}$")  # what Anthropic's tool_use ids may hold


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    return {"input_tokens": prompt_tokens or 0, "output_tokens": completion_tokens or 0}


def tool_use_id(upstream_id: Any) -> str:
    """The model server's call id as a `toolu_` id (the client sends it back in its tool_result and
    the gateway passes it on unchanged), or a new one when it holds other characters."""
    if isinstance(upstream_id, str) and USABLE_ID.match(upstream_id):
        return upstream_id if upstream_id.startswith("toolu_") else "toolu_" + upstream_id
    return "toolu_" + secrets.token_hex(12)


def tool_input(name: str, arguments: Any) -> dict[str, Any]:
    """A call's arguments (a JSON text, as OpenAI sends them) as the object Anthropic's `input`
    is; anything but an object is the model server's failure (502), not the client's."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        shown = str(arguments)[:200]
        raise GatewayError(
            502, f"The model called the tool '{name}' with arguments that are not a JSON object: {shown}"
        )
    return parsed


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise GatewayError(502, "The model server sent a tool call without a name.")
    return {
        "type": "tool_use",
        "id": tool_use_id(call.get("id")),
        "name": name,
        "input": tool_input(name, function.get("arguments")),
    }


def chat_to_message(chat: dict[str, Any], *, model: str, thinking: bool = False) -> dict[str, Any]:
    """A whole OpenAI chat completion as an Anthropic message: its reasoning as a thinking block
    (when the client asked for thinking), its text, then its tool calls."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    calls = [_tool_use_block(call) for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
    reasoning = message.get("reasoning")
    if thinking and isinstance(reasoning, str) and reasoning:
        content.insert(0, {"type": "thinking", "thinking": reasoning, "signature": ""})
    finish = "tool_calls" if calls else choice.get("finish_reason") or "stop"
    usage = chat.get("usage") or {}
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content + calls,
        "stop_reason": STOP_REASONS.get(finish, "end_turn"),
        "stop_sequence": None,
        "usage": _usage(usage.get("prompt_tokens"), usage.get("completion_tokens")),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class MessageStream:
    """Anthropic's stream events, in their order, from OpenAI chat completion chunks.

    Blocks are numbered in the order they begin: a thinking block (the model's reasoning, only
    when the client asked for thinking), a text block (only when text came), then one block per
    tool call. A tool call is sent when it is complete (the next call, text or the end
    begins), as one `input_json_delta` holding its whole input: mlx-lm's server sends each call
    whole in one chunk anyway, other servers send the arguments in pieces that only parse once
    all have come, and a call whose arguments are not a JSON object becomes an error event
    (GatewayError, raised to the view) instead of a block the client could not parse."""

    def __init__(self, model: str, *, thinking: bool = False) -> None:
        self.model = model
        self.thinking = thinking
        self.finish_reason = "stop"
        self.index = 0  # the next block's
        self.open_kind: str | None = None  # "text" or "thinking": the block being written
        self.pending: dict[str, Any] | None = None  # the tool call being assembled
        self.made_call = False

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(0, 0),
        }
        return sse("message_start", {"type": "message_start", "message": message}) + sse("ping", {"type": "ping"})

    def _close_text(self) -> bytes:
        if self.open_kind is None:
            return b""
        self.open_kind = None
        self.index += 1
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.index - 1})

    def _text(self, text: str, kind: str = "text") -> bytes:
        """Text (or thinking) into the open block of that kind, or a new one."""
        out = self._flush_call()
        if self.open_kind != kind:
            out += self._close_text()
            self.open_kind = kind
            empty = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out += sse(
                "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": empty}
            )
        piece = {"type": "text_delta", "text": text} if kind == "text" else {"type": "thinking_delta", "thinking": text}
        return out + sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": piece})

    def _call_piece(self, piece: dict[str, Any], position: int) -> bytes:
        key = piece.get("index", position)
        out = b""
        if self.pending is not None and self.pending["key"] != key:
            out += self._flush_call()
        if self.pending is None:
            out += self._close_text()
            self.pending = {"key": key, "id": None, "function": {"name": "", "arguments": ""}}
        function: dict[str, Any] = piece["function"] if isinstance(piece.get("function"), dict) else {}
        if isinstance(piece.get("id"), str):
            self.pending["id"] = self.pending["id"] or piece["id"]
        if isinstance(name := function.get("name"), str):
            self.pending["function"]["name"] += name
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        if isinstance(arguments, str):
            self.pending["function"]["arguments"] += arguments
        return out

    def _flush_call(self) -> bytes:
        if self.pending is None:
            return b""
        call, self.pending = self.pending, None
        block = _tool_use_block(call)
        self.made_call, index = True, self.index
        self.index += 1
        return (
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
            )
            + sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                },
            )
            + sse("content_block_stop", {"type": "content_block_stop", "index": index})
        )

    def chunk(self, data: dict[str, Any]) -> bytes:
        choices = data.get("choices") or []
        if not choices:
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        out = b""
        if self.thinking and isinstance(delta.get("reasoning"), str) and delta["reasoning"]:
            out += self._text(delta["reasoning"], "thinking")
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text(delta["content"])
        for position, piece in enumerate(delta.get("tool_calls") or []):
            if isinstance(piece, dict):
                out += self._call_piece(piece, position)
        return out

    def finish(self, prompt_tokens: int | None, completion_tokens: int | None) -> bytes:
        out = self._flush_call() + self._close_text()
        if self.index == 0:  # no text and no call: an empty text block, as the whole answer has
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            out += sse("content_block_start", block) + sse(
                "content_block_stop", {"type": "content_block_stop", "index": 0}
            )
        finish = "tool_calls" if self.made_call else self.finish_reason
        delta = {"stop_reason": STOP_REASONS.get(finish, "end_turn"), "stop_sequence": None}
        return (
            out
            + sse(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": _usage(prompt_tokens, completion_tokens)},
            )
            + sse("message_stop", {"type": "message_stop"})
        )
