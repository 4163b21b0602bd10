"""The dashboard's quick chat: one OpenAI chat completion sent to a running server, server side.

Plain urllib with a timeout; every failure comes back as a ChatError with a message for people.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from servers.addresses import reach_url

CHAT_TIMEOUT = 60.0
CHAT_MAX_TOKENS = 256


class ChatError(Exception):
    """The server could not be reached or did not answer well; the message says what happened."""


@dataclass(frozen=True)
class ToolCallShown:
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    finish_reason: str = ""
    max_tokens: int = CHAT_MAX_TOKENS
    tool_calls: tuple[ToolCallShown, ...] = ()

    @property
    def empty_reason(self) -> str:
        """Why the answer has no text, from what the server said ("" when it has text)."""
        if self.text.strip():
            return ""
        if self.tool_calls:
            return "The model called a tool instead of writing text (the quick chat runs no tools)."
        if self.finish_reason == "length":
            return (
                f"The model used all {self.max_tokens} answer tokens without writing visible text "
                "(a thinking model may still have been thinking)."
            )
        if self.finish_reason == "stop":
            return "The model ended its answer at once (its first token was the end of the text)."
        if self.finish_reason:
            return f"The server ended the answer with finish reason “{self.finish_reason}”."
        return "The server sent an empty answer and did not say why."

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or self.seconds <= 0:
            return None
        return self.completion_tokens / self.seconds


def chat_url(host: str, port: int) -> str:
    """Where to reach a server that listens on `host`: a wildcard address is reached on loopback."""
    return reach_url(host, port, "/v1/chat/completions")


def chat_complete(
    *, url: str, prompt: str, timeout: float = CHAT_TIMEOUT, max_tokens: int = CHAT_MAX_TOKENS, model: str = ""
) -> ChatReply:
    """`model`: what an mlx_vlm.server preloaded (it loads whatever a request names; mlx-lm's
    server answers with its own without one)."""
    asked = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": False}
    body = json.dumps({**asked, "model": model} if model else asked).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", errors="replace").strip()
        raise ChatError(f"The server answered {exc.code} {exc.reason}" + (f": {detail}" if detail else ".")) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise ChatError("Could not connect: connection refused. Is the server running?") from None
        if isinstance(reason, TimeoutError):
            raise ChatError(f"No answer within {timeout:g} seconds.") from None
        raise ChatError(f"Could not reach the server: {reason}.") from None
    except TimeoutError:
        raise ChatError(f"No answer within {timeout:g} seconds.") from None
    except (ConnectionError, OSError) as exc:
        raise ChatError(f"The connection failed: {exc}.") from None
    seconds = time.perf_counter() - began
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        calls = _tool_calls(choice["message"].get("tool_calls"))
    except (ValueError, KeyError, IndexError, TypeError):
        raise ChatError("The server's answer was not an OpenAI chat completion.") from None
    usage = data.get("usage") or {}
    return ChatReply(
        text=str(text or ""),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        seconds=seconds,
        finish_reason=str(choice.get("finish_reason") or ""),
        max_tokens=max_tokens,
        tool_calls=calls,
    )


def _tool_calls(listed: object) -> tuple[ToolCallShown, ...]:
    calls = listed if isinstance(listed, list) else []
    functions = [call.get("function") for call in calls if isinstance(call, dict)]
    return tuple(
        ToolCallShown(name=str(f.get("name") or "?"), arguments=str(f.get("arguments") or ""))
        for f in functions
        if isinstance(f, dict)
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None
