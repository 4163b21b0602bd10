"""An Anthropic Messages request, validated and translated into an OpenAI chat completions body
for the model server (mlx-lm's server renders `messages` and `tools` with the model's template).

Every refusal is a 400 naming the field path as Anthropic does (`messages.2.content.1.tool_use_id`).
A field the gateway cannot honour is either ignored (`IGNORED_FIELDS`: it changes how the answer is
made or billed, not what it means) or refused (it would change what the answer means).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError

# Accepted and ignored, with why: the one list (docs/gateway.md, "Anthropic Messages", shows it).
IGNORED_FIELDS: dict[str, str] = {
    "thinking.budget_tokens": "the model thinks as its chat template makes it; no budget can be set",
    "context_management": "the client manages its context; the server keeps no conversation",
    "output_config.effort": "local models have no effort setting",
    "metadata": "only Anthropic uses it (abuse detection)",
    "service_tier": "there is one tier: this machine",
    "container": "no code-execution containers here (only tools the client runs are served)",
    "cache_control": "mlx-lm caches the longest common prompt prefix by itself",
    "tool_choice.disable_parallel_tool_use": "mlx-lm has no such switch; a model that makes several calls returns them all",
    "anthropic-beta (header), ?beta=true": "betas name Anthropic features; the fields they bring are handled as above",
}
# Fields whose meaning no local model server can honour: refused, never dropped.
REFUSED_FIELDS: dict[str, str] = {
    "mcp_servers": "the gateway connects to no MCP server; run the MCP client in your app",
    "output_config.format": "structured output is not supported by the model server",
}
BILLING_HEADER = "x-anthropic-billing-header:"  # Claude Code's system block, new on every request
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
CHOICES = {"auto": "auto", "any": "required", "none": "none"}
DROPPED_BLOCKS = ("thinking", "redacted_thinking")  # earlier turns' reasoning: Anthropic drops it too


def _fail(where: str, why: str) -> GatewayError:
    return GatewayError(400, f"{where}: {why}.")


def _str(block: dict[str, Any], field: str, where: str, *, empty: bool = False) -> str:
    value = block.get(field)
    if not isinstance(value, str) or (not empty and not value):
        raise _fail(f"{where}.{field}", "required, a string" if value is None else "must be a non-empty string")
    return value


def _text_block(block: Any, where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise _fail(where, "must be a text block ({'type': 'text', 'text': ...})")
    return _str(block, "text", where, empty=True)


def _system_texts(content: Any, where: str) -> list[str]:
    """A system prompt as a string or text blocks, without Claude Code's billing block: it differs
    on every request, so a prompt that begins with it never matches mlx-lm's prompt cache."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise _fail(where, "must be a string or a list of text blocks")
    texts = [_text_block(block, f"{where}.{m}") for m, block in enumerate(content)]
    return [text for text in texts if not text.startswith(BILLING_HEADER)]


def _image_part(block: dict[str, Any], where: str, takes_images: bool) -> dict[str, Any]:
    if not takes_images:
        raise _fail(where, "this model takes no images")
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise _fail(f"{where}.source", "must be {'type': 'base64', 'media_type': ..., 'data': ...}")
    media_type, data = _str(source, "media_type", f"{where}.source"), _str(source, "data", f"{where}.source")
    return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}


@dataclass
class _Seen:
    """What the conversation so far holds that later blocks may refer to."""

    call_ids: set[str] = field(default_factory=set)  # tool_use ids
    loaded_tools: set[str] = field(default_factory=set)  # deferred tools a tool search returned


def _result_part(inner: Any, where: str, seen: _Seen) -> str:
    """One block of a tool result as text; a `tool_reference` (a tool search's find) loads a
    deferred tool (`defer_loading`) into what the model sees from then on."""
    if isinstance(inner, dict) and inner.get("type") == "image":
        raise _fail(where, "this model takes no images")
    if isinstance(inner, dict) and inner.get("type") == "tool_reference":
        name = _str(inner, "tool_name", where)
        seen.loaded_tools.add(name)
        return f"Tool loaded: {name}"
    return _text_block(inner, where)


def _tool_result_text(block: dict[str, Any], where: str, seen: _Seen) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        content = "\n\n".join(_result_part(inner, f"{where}.content.{m}", seen) for m, inner in enumerate(content))
    elif not isinstance(content, str):
        raise _fail(f"{where}.content", "must be a string or a list of text blocks")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise _fail(f"{where}.is_error", "must be true or false")
    return f"Error: {content}" if is_error else content  # OpenAI's tool message has no error flag


def _user_messages(content: Any, where: str, seen: _Seen, takes_images: bool) -> list[dict[str, Any]]:
    """A user turn in order: runs of text (and images) as user messages, each tool result as a tool
    message, so text beside the results keeps its place."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []

    def close_parts() -> None:
        if parts:
            texts_only = all(part["type"] == "text" for part in parts)
            joined = "\n\n".join(part["text"] for part in parts) if texts_only else list(parts)
            out.append({"role": "user", "content": joined})
            parts.clear()

    for m, block in enumerate(_blocks(content, where)):
        at, kind = f"{where}.{m}", block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _str(block, "text", at, empty=True)})
        elif kind == "image":
            parts.append(_image_part(block, at, takes_images))
        elif kind == "tool_result":
            close_parts()
            call_id = _str(block, "tool_use_id", at)
            if call_id not in seen.call_ids:
                raise _fail(f"{at}.tool_use_id", f"'{call_id[:80]}' answers no tool_use block of an earlier message")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block, at, seen)})
        elif kind not in DROPPED_BLOCKS:
            raise _fail(f"{at}.type", f"'{kind}' blocks are not supported in a user message")
    close_parts()
    return out


def _assistant_message(content: Any, where: str, seen: _Seen) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for m, block in enumerate(_blocks(content, where)):
        at, kind = f"{where}.{m}", block["type"]
        if kind == "text":
            texts.append(_str(block, "text", at, empty=True))
        elif kind == "tool_use":
            call_id, name = _str(block, "id", at), _str(block, "name", at)
            if not isinstance(block.get("input"), dict):
                raise _fail(f"{at}.input", "required, an object")
            seen.call_ids.add(call_id)
            arguments = json.dumps(block["input"], ensure_ascii=False)
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        elif kind not in DROPPED_BLOCKS:
            raise _fail(f"{at}.type", f"'{kind}' blocks are not supported in an assistant message")
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise _fail(where, "must be a string or a list of content blocks")
    for m, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _fail(f"{where}.{m}.type", "required, the block's type")
    return content


def _chat_messages(body: dict[str, Any], takes_images: bool, seen: _Seen) -> list[dict[str, Any]]:
    """The conversation as chat messages.

    `system`-role messages (Claude Code's mid-conversation system beta) stay where they are, and
    only system text that is already adjacent is merged into one message (the top-level `system`
    with system messages right after it, or a run of them). Why not merge every system text into
    the first message, which more chat templates accept: the position is part of the meaning (a
    note that applies from that turn on), and mlx-lm's prompt cache reuses the longest common
    prefix, so a note moved into the first message would change the prompt's beginning each time
    one is added and make the model read the whole long agent prompt again, as the billing block
    does. The templates of the tool-calling models agents run (Qwen, Llama 3, GLM, ChatML) render a
    system turn anywhere; one that refuses it answers with its own message, a 400, never silently.
    """
    chat: list[dict[str, Any]] = []

    def system(texts: list[str]) -> None:
        if not texts:
            return
        if chat and chat[-1]["role"] == "system":
            chat[-1]["content"] += "\n\n" + "\n\n".join(texts)
        else:
            chat.append({"role": "system", "content": "\n\n".join(texts)})

    if body.get("system") is not None:
        system(_system_texts(body["system"], "system"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "required, a non-empty list")
    for n, message in enumerate(messages):
        where = f"messages.{n}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant", "system"):
            raise _fail(f"{where}.role", "must be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _fail(f"{where}.content", "required")
        if role == "system":
            system(_system_texts(message["content"], f"{where}.content"))
        elif role == "assistant":
            chat.append(_assistant_message(message["content"], f"{where}.content", seen))
        else:
            chat.extend(_user_messages(message["content"], f"{where}.content", seen, takes_images))
    return chat


def _tools(body: dict[str, Any], loaded: set[str]) -> list[dict[str, Any]]:
    """Custom tools as OpenAI function tools; a deferred one (`defer_loading`) only once a tool
    search has returned it, as Anthropic keeps it out of the model's context until then."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _fail("tools", "must be a list of tools")
    out: list[dict[str, Any]] = []
    for n, tool in enumerate(tools):
        where = f"tools.{n}"
        if not isinstance(tool, dict):
            raise _fail(where, "must be an object")
        if tool.get("type") not in (None, "custom"):
            raise _fail(f"{where}.type", f"'{str(tool['type'])[:60]}' is a tool Anthropic runs; only custom tools")
        name = _str(tool, "name", where)
        if not TOOL_NAME.match(name):
            raise _fail(f"{where}.name", "letters, digits, '_' and '-' only, at most 128")
        if any(t["function"]["name"] == name for t in out):
            raise _fail(f"{where}.name", f"'{name}' names two tools")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _fail(f"{where}.input_schema", "required, a JSON schema with type 'object'")
        if tool.get("defer_loading") is True and name not in loaded:
            continue
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            function["description"] = _str(tool, "description", where, empty=True)
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> str | dict[str, Any] | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in (*CHOICES, "tool"):
        raise _fail("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'")
    if "disable_parallel_tool_use" in choice and not isinstance(choice["disable_parallel_tool_use"], bool):
        raise _fail("tool_choice.disable_parallel_tool_use", "must be true or false")
    if choice["type"] in ("any", "tool") and not tools:
        raise _fail("tool_choice", f"'{choice['type']}' needs tools")
    if choice["type"] != "tool":
        return CHOICES[choice["type"]]
    name = _str(choice, "name", "tool_choice")
    if name not in (t["function"]["name"] for t in tools):
        raise _fail("tool_choice.name", f"no tool is named '{name[:80]}'")
    return {"type": "function", "function": {"name": name}}


def _refuse_unservable(body: dict[str, Any]) -> None:
    if body.get("mcp_servers"):
        raise _fail("mcp_servers", REFUSED_FIELDS["mcp_servers"])
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise _fail("output_config", "must be an object")
    if config and config.get("format") is not None:
        raise _fail("output_config.format", REFUSED_FIELDS["output_config.format"])


def wants_thinking(body: dict[str, Any]) -> bool:
    """Whether the model's reasoning goes back as thinking blocks: only when the client asked for
    thinking (`enabled` or `adaptive`) and not with `display: omitted`; a client that did not ask
    reads `content[0].text` and would find a thinking block there instead."""
    thinking = body.get("thinking")
    if thinking is None:
        return False
    if not isinstance(thinking, dict):
        raise _fail("thinking", "must be an object")
    return thinking.get("type") in ("enabled", "adaptive") and thinking.get("display") != "omitted"


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise GatewayError(400, f"{name}: must be a number from {low:g} to {high:g}.")
    return float(value)


def prompt_of(body: dict[str, Any], *, takes_images: bool = False) -> dict[str, Any]:
    """What the model reads: the chat messages, and the tools and tool choice when there are any.
    `tool_choice: none` leaves the tools out, so the model cannot call one (mlx-lm's server does
    not read `tool_choice`; the other choices are sent for servers that do)."""
    _refuse_unservable(body)
    wants_thinking(body)  # checked with the rest of the body
    seen = _Seen()
    prompt: dict[str, Any] = {"messages": _chat_messages(body, takes_images, seen)}
    tools = _tools(body, seen.loaded_tools)
    choice = _tool_choice(body, tools)
    if tools and choice != "none":
        prompt["tools"] = tools
    if choice is not None:
        prompt["tool_choice"] = choice
    return prompt


def messages_to_chat(body: dict[str, Any], *, takes_images: bool = False) -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat completions body (without `model`)."""
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise GatewayError(400, "max_tokens: required, a whole number of at least 1.")
    out: dict[str, Any] = {**prompt_of(body, takes_images=takes_images), "max_tokens": max_tokens}
    out["stream"] = bool(body.get("stream"))
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
