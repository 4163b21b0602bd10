"""Anthropic's Messages API on top of a model server's OpenAI chat completions: the request
validated and translated, the answer (whole or streamed) translated back."""

from __future__ import annotations

import json
import secrets
from typing import Any

from gateway.errors import GatewayError

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _text_of(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text blocks (other block types are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise GatewayError(400, f"{where}: only text content blocks are supported.")
            parts.append(block["text"])
        return "".join(parts)
    raise GatewayError(400, f"{where}: content must be a string or a list of text blocks.")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise GatewayError(400, f"{name}: must be a number from {low:g} to {high:g}.")
    return float(value)


def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat completions body (without `model`)."""
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise GatewayError(400, "max_tokens: required, a whole number of at least 1.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "messages: required, a non-empty list.")
    chat: list[dict[str, str]] = []
    if body.get("system") is not None:
        chat.append({"role": "system", "content": _text_of(body["system"], "system")})
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise GatewayError(400, f"messages.{n}: role must be 'user' or 'assistant'.")
        chat.append({"role": message["role"], "content": _text_of(message.get("content"), f"messages.{n}")})
    out: dict[str, Any] = {"messages": chat, "max_tokens": max_tokens, "stream": bool(body.get("stream"))}
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise GatewayError(400, "stop_sequences: must be a list of strings.")
        out["stop"] = stops
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        if (value := _number(body, name, low, high)) is not None:
            out[name] = value
    if (top_k := _number(body, "top_k", 0, 1_000_000)) is not None:
        out["top_k"] = int(top_k)
    return out


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    return {"input_tokens": prompt_tokens or 0, "output_tokens": completion_tokens or 0}


def chat_to_message(chat: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A whole OpenAI chat completion as an Anthropic message."""
    choice = (chat.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    usage = chat.get("usage") or {}
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage(usage.get("prompt_tokens"), usage.get("completion_tokens")),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class MessageStream:
    """Anthropic's stream events, in their order, from OpenAI chat completion chunks."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish_reason = "stop"

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
        return (
            sse("message_start", {"type": "message_start", "message": message})
            + sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            + sse("ping", {"type": "ping"})
        )

    def chunk(self, data: dict[str, Any]) -> bytes:
        choices = data.get("choices") or []
        if not choices:
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        text = (choice.get("delta") or {}).get("content") or ""
        if not text:
            return b""
        return sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )

    def finish(self, prompt_tokens: int | None, completion_tokens: int | None) -> bytes:
        delta = {"stop_reason": STOP_REASONS.get(self.finish_reason, "end_turn"), "stop_sequence": None}
        return (
            sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": _usage(prompt_tokens, completion_tokens)},
            )
            + sse("message_stop", {"type": "message_stop"})
        )
