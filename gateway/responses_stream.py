"""A model server's chat completion (whole, or streamed chunks) as an OpenAI Responses answer: the
`response` object with its `output` items, and the stream's events in their order, each with its
`sequence_number`. A whole answer goes through the same steps as a stream, so both have one shape.

Events, as the openai SDK and Codex CLI read them: response.created, response.in_progress; per
output item response.output_item.added ... response.output_item.done (a `message` with its
content_part and output_text events, a `function_call` with function_call_arguments events, a
`reasoning` item with reasoning_text events); then response.completed, or response.incomplete
(the answer reached max_output_tokens), or response.failed (the model server failed midway).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.responses_request import offered_tools

ECHOED = ("instructions", "max_output_tokens", "metadata", "user", "prompt_cache_key")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def usage(prompt_tokens: int | None, completion_tokens: int | None, cached_tokens: int | None = None) -> dict[str, Any]:
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached_tokens or 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


@dataclass
class _Item:
    """One output item being built: `text` is a message's text, a reasoning item's text or a call's
    arguments."""

    kind: str  # message | reasoning | function_call
    id: str
    index: int
    key: Any = None  # a call's index (or id) in the chunks
    text: str = ""
    call: dict[str, Any] = field(default_factory=dict)

    def shape(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            content = [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}]
            return {"type": "message", "id": self.id, "status": status, "role": "assistant", "content": content}
        if self.kind == "reasoning":
            content = [{"type": "reasoning_text", "text": self.text}]
            return {"type": "reasoning", "id": self.id, "status": status, "summary": [], "content": content}
        return {**self.call, "type": "function_call", "id": self.id, "arguments": self.text, "status": status}


class ResponseStream:
    """The Responses answer to one request, built from chat completion deltas."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.names = offered_tools(body.get("tools")).names
        self.sequence = 0
        self.done: list[dict[str, Any]] = []
        self.open: _Item | None = None
        self.finish_reason = "stop"
        self.cached_tokens: int | None = None  # of the prompt, found in the model server's cache

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data)

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        """The `response` object, echoing what the openai SDK's Response model reads."""
        body = self.body
        answer: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": body["model"],
            "output": list(self.done),
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "store": False,  # whatever was asked: nothing is kept
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None,
            **{name: body.get(name) for name in ECHOED},
        }
        answer.update(fields)
        return answer

    def start(self) -> bytes:
        response = self.response("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _close(self) -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        status = "incomplete" if self.finish_reason == "length" else "completed"
        where = {"item_id": item.id, "output_index": item.index}
        out = b""
        if item.kind == "message":
            part = item.shape(status)["content"][0]
            out += self._event("response.output_text.done", **where, content_index=0, text=item.text, logprobs=[])
            out += self._event("response.content_part.done", **where, content_index=0, part=part)
        elif item.kind == "reasoning":
            part = {"type": "reasoning_text", "text": item.text}
            out += self._event("response.reasoning_text.done", **where, content_index=0, text=item.text)
            out += self._event("response.content_part.done", **where, content_index=0, part=part)
        else:
            out += self._event(
                "response.function_call_arguments.done", **where, arguments=item.text, name=item.call["name"]
            )
        shaped = item.shape(status)
        self.done.append(shaped)
        return out + self._event("response.output_item.done", output_index=item.index, item=shaped)

    def _begin(self, kind: str, key: Any = None, call: dict[str, Any] | None = None) -> bytes:
        out = self._close()
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc"}[kind]
        self.open = item = _Item(kind=kind, id=new_id(prefix), index=len(self.done), key=key, call=call or {})
        out += self._event("response.output_item.added", output_index=item.index, item=item.shape("in_progress"))
        if kind != "function_call":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            if kind == "reasoning":
                part = {"type": "reasoning_text", "text": ""}
            out += self._event(
                "response.content_part.added", item_id=item.id, output_index=item.index, content_index=0, part=part
            )
        return out

    def _text(self, kind: str, text: str) -> bytes:
        out = b"" if self.open is not None and self.open.kind == kind else self._begin(kind)
        assert self.open is not None
        self.open.text += text
        event = "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        where = {"item_id": self.open.id, "output_index": self.open.index, "content_index": 0}
        return out + self._event(event, **where, delta=text, **extra)

    def _tool_call(self, position: int, call: dict[str, Any]) -> bytes:
        """A call whole (mlx-lm sends each call in one delta) or in pieces (the first one naming it)."""
        function = call.get("function") or {}
        key = call.get("index", call.get("id", position))
        out = b""
        if self.open is None or self.open.kind != "function_call" or self.open.key != key:
            name = str(function.get("name") or "")
            namespace, plain = self.names.get(name, (None, name))
            shown: dict[str, Any] = {"call_id": str(call.get("id") or new_id("call")), "name": plain}
            if namespace is not None:
                shown["namespace"] = namespace
            out += self._begin("function_call", key=key, call=shown)
        assert self.open is not None
        piece = function.get("arguments") or ""
        if not isinstance(piece, str):
            piece = json.dumps(piece)
        if piece:
            self.open.text += piece
            where = {"item_id": self.open.id, "output_index": self.open.index}
            out += self._event("response.function_call_arguments.delta", **where, delta=piece)
        return out

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        """One chat delta (or a whole answer's message): reasoning, text, tool calls, in that order."""
        if finish_reason:
            self.finish_reason = finish_reason
        out = b""
        if isinstance(delta.get("reasoning"), str) and delta["reasoning"]:
            out += self._text("reasoning", delta["reasoning"])
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text("message", delta["content"])
        for position, call in enumerate(delta.get("tool_calls") or []):
            if isinstance(call, dict):
                out += self._tool_call(position, call)
        return out

    def chunk(self, data: dict[str, Any]) -> bytes:
        """A streamed chunk: a delta, or the usage chunk that ends the stream (its cached tokens)."""
        if isinstance(data.get("usage"), dict):
            self.cached_tokens = _cached(data["usage"])
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return b""
        return self.delta(choices[0].get("delta") or {}, choices[0].get("finish_reason"))

    def _end(self) -> bytes:
        """Close what is open; an empty answer is still a message (its `output_text` is "")."""
        out = self._begin("message") if not self.done and self.open is None else b""
        return out + self._close()

    def _summary(self, prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, Any]:
        spent = usage(prompt_tokens, completion_tokens, self.cached_tokens)
        if self.finish_reason == "length":
            return self.response("incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=spent)
        return self.response("completed", usage=spent)

    def final(self, prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, Any]:
        """The whole response, completed or incomplete."""
        self._end()
        return self._summary(prompt_tokens, completion_tokens)

    def finish(self, prompt_tokens: int | None, completion_tokens: int | None) -> bytes:
        """The stream's last events."""
        out = self._end()
        response = self._summary(prompt_tokens, completion_tokens)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=response)

    def failed(self, message: str) -> bytes:
        error = {"code": "server_error", "message": message}
        return self._event("response.failed", response=self.response("failed", error=error))


def chat_to_response(chat: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion as a Responses `response`."""
    answer = ResponseStream(body)
    choice = (chat.get("choices") or [{}])[0]
    answer.delta(choice.get("message") or {}, choice.get("finish_reason"))
    spent: dict[str, Any] = chat["usage"] if isinstance(chat.get("usage"), dict) else {}
    answer.cached_tokens = _cached(spent)
    return answer.final(spent.get("prompt_tokens"), spent.get("completion_tokens"))


def _cached(spent: dict[str, Any]) -> int | None:
    details = spent.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else None
