"""OpenAI's Responses API (`POST /v1/responses`) on top of a model server's chat completions: the
request validated and translated into a chat completions body. Stateless: nothing is kept between
requests, so a client sends the whole conversation in `input` each time (Codex CLI does).

Every malformed field or item is a 400 naming its path (`input.3.call_id: required`), never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.inline import INLINE_HINT

# Accepted and ignored (docs/gateway.md says why for each): the one list of them.
IGNORED_FIELDS = frozenset(
    {
        "store",  # nothing is ever kept, whatever it says
        "include",  # e.g. reasoning.encrypted_content: there is nothing encrypted to include
        "prompt_cache_key",  # mlx-lm's prompt cache finds the longest shared prefix by itself
        "prompt_cache_retention",
        "metadata",
        "client_metadata",  # Codex CLI's
        "user",
        "safety_identifier",
        "truncation",  # a prompt the context cannot hold is refused, never truncated
        "service_tier",
        "stream_options",
        "reasoning",  # a reasoning model thinks as its chat template says
        "parallel_tool_calls",  # the model makes as many calls as it makes
        "max_tool_calls",
        "top_logprobs",
    }
)
# Fields that need kept state or a hosted feature: refused, never dropped in silence.
STATEFUL = "this server keeps no responses; send the whole conversation in input."
REFUSED_FIELDS = {
    "previous_response_id": STATEFUL,
    "conversation": STATEFUL,
    "prompt": "stored prompt templates are not supported; send instructions and input instead.",
    "background": "background responses are not supported (nothing is kept to poll).",
}
KNOWN_FIELDS = frozenset(
    {"model", "input", "instructions", "stream", "tools", "tool_choice", "max_output_tokens", "temperature", "top_p"}
    | {"text"}
)
SYSTEM_ROLES = {"system": "system", "developer": "system"}
ROLES = {**SYSTEM_ROLES, "user": "user", "assistant": "assistant"}
TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal", "text": "text"}


@dataclass(frozen=True)
class Offered:
    """The tools the model sees, and for each flattened name the client's (namespace, name)."""

    tools: list[dict[str, Any]]
    names: dict[str, tuple[str | None, str]]


def _fail(where: str, problem: str) -> GatewayError:
    return GatewayError(400, f"{where}: {problem}")


def _text(item: dict[str, Any], field: str, where: str, *, required: bool = True) -> str | None:
    value = item.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise _fail(f"{where}.{field}", "required, a non-empty string." if required else "must be a string.")
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(name, f"must be a number from {low:g} to {high:g}.")
    return float(value)


def _check_fields(body: dict[str, Any]) -> None:
    for name, why in REFUSED_FIELDS.items():
        if body.get(name) not in (None, False):
            raise _fail(name, why)
    unknown = sorted(set(body) - KNOWN_FIELDS - IGNORED_FIELDS - set(REFUSED_FIELDS))
    if unknown:
        raise _fail(unknown[0], "unknown parameter.")


def _check_format(text: Any) -> None:
    """Plain text only: mlx-lm's server has no `response_format` to constrain the answer to JSON."""
    if text is None:
        return
    if not isinstance(text, dict):
        raise _fail("text", "must be an object.")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise _fail("text.format", "must be an object with a type.")
    if fmt["type"] != "text":
        raise _fail("text.format", f"'{fmt['type']}' is not supported: the model server cannot constrain output.")


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    name = _text(tool, "name", where)
    assert name is not None
    description = _text(tool, "description", where, required=False)
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise _fail(f"{where}.parameters", "must be a JSON schema object.")
    if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
        raise _fail(f"{where}.strict", "must be true or false.")
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def offered_tools(tools: Any) -> Offered:
    """Function tools as chat tools; `namespace` tools flattened into their functions (named
    `namespace.name` where a plain name would clash); the hosted kinds no local model can serve
    (web_search, file_search, mcp, custom, ...) left out."""
    if tools is None:
        return Offered(tools=[], names={})
    if not isinstance(tools, list):
        raise _fail("tools", "must be a list of tools.")
    found: list[tuple[str | None, dict[str, Any], str]] = []  # (namespace, chat tool, where)
    for n, tool in enumerate(tools):
        where = f"tools.{n}"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _fail(where, "must be an object with a type.")
        if tool["type"] == "function":
            found.append((None, _function(tool, where), where))
        elif tool["type"] == "namespace":
            namespace = _text(tool, "name", where)
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise _fail(f"{where}.tools", "must be a list of tools.")
            for m, member in enumerate(inner):
                if not isinstance(member, dict) or not isinstance(member.get("type"), str):
                    raise _fail(f"{where}.tools.{m}", "must be an object with a type.")
                if member["type"] == "function":
                    found.append((namespace, _function(member, f"{where}.tools.{m}"), f"{where}.tools.{m}"))
    counts: dict[str, int] = {}
    for _namespace, tool, _where in found:
        counts[tool["function"]["name"]] = counts.get(tool["function"]["name"], 0) + 1
    names: dict[str, tuple[str | None, str]] = {}
    for namespace, tool, where in found:
        name = tool["function"]["name"]
        flat = name if counts[name] == 1 or namespace is None else f"{namespace}.{name}"
        if flat in names:
            raise _fail(f"{where}.name", f"'{flat}' names two tools.")
        names[flat] = (namespace, name)
        tool["function"]["name"] = flat
    return Offered(tools=[tool for _n, tool, _w in found], names=names)


def flat_name(names: dict[str, tuple[str | None, str]], namespace: str | None, name: str) -> str:
    for flat, known in names.items():
        if known == (namespace, name):
            return flat
    return name


def _chosen(choice: Any, offered: Offered) -> list[dict[str, Any]]:
    """The tools the model is shown under `tool_choice`: none for "none", the one named for a
    function. ("required" cannot be enforced by the model server: the model may answer in text.)"""
    if choice is None or choice in ("auto", "required"):
        return offered.tools
    if choice == "none":
        return []
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        flat = flat_name(offered.names, None, choice["name"])
        chosen = [t for t in offered.tools if t["function"]["name"] == flat]
        if not chosen:
            raise _fail("tool_choice.name", f"'{choice['name']}' is not one of the function tools.")
        return chosen
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools" and isinstance(choice.get("tools"), list):
        allowed = {t.get("name") for t in choice["tools"] if isinstance(t, dict) and t.get("type") == "function"}
        return [t for t in offered.tools if offered.names[t["function"]["name"]][1] in allowed]
    raise _fail("tool_choice", "must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}.")


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url.strip().lower().startswith("data:"):
        what = "a URL" if isinstance(url, str) else "required (a file_id is not supported)"
        raise _fail(f"{where}.image_url", f"{what}; {INLINE_HINT}")
    return {"type": "image_url", "image_url": {"url": url}}


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content as chat content: a string, or parts when it holds an image."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _fail(where, "must be a string or a list of content parts.")
    parts: list[dict[str, Any]] = []
    for n, part in enumerate(content):
        at = f"{where}.{n}"
        kind = part.get("type") if isinstance(part, dict) and isinstance(part.get("type"), str) else None
        if isinstance(part, dict) and kind in TEXT_PARTS:
            text = _text(part, TEXT_PARTS[kind], at, required=False) or ""
            parts.append({"type": "text", "text": text})
        elif isinstance(part, dict) and kind == "input_image":
            parts.append(_image(part, at))
        else:
            raise _fail(f"{at}.type", "must be input_text, output_text or input_image (with a data: URL).")
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _output(output: Any, where: str) -> str:
    """A function call's output: a string, or text parts."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        content = _content(output, where)
        if isinstance(content, str):
            return content
    raise _fail(where, "must be a string or a list of input_text parts.")


def _arguments(item: dict[str, Any], where: str) -> str:
    arguments = item.get("arguments")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _fail(f"{where}.arguments", "required, a JSON object in a string.")
    return str(arguments)


class _Conversation:
    """Chat messages built item by item: a function call joins the assistant turn before it."""

    def __init__(self, names: dict[str, tuple[str | None, str]]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.names = names
        self.call_ids: set[str] = set()

    def system(self, text: str) -> None:
        """Instructions and the developer messages that open a conversation make one system
        message: many chat templates take a single system message, first."""
        if self.messages and self.messages[-1]["role"] == "system" and len(self.messages) == 1:
            self.messages[-1]["content"] += "\n\n" + text
        else:
            self.messages.append({"role": "system", "content": text})

    def item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise _fail(where, "must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            self._call(item, where)
        elif kind == "function_call_output":
            call_id = _text(item, "call_id", where)
            if call_id not in self.call_ids:
                raise _fail(f"{where}.call_id", f"no function_call with call_id '{call_id}' comes before it.")
            self.messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": _output(item.get("output"), f"{where}.output")}
            )
        elif kind == "reasoning":
            return  # the model's own earlier thoughts: not shown to it again
        elif kind == "item_reference":
            raise _fail(where, STATEFUL)
        else:
            raise _fail(f"{where}.type", "must be message, function_call, function_call_output or reasoning.")

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _fail(f"{where}.role", "must be system, developer, user or assistant.")
        content = _content(item.get("content"), f"{where}.content")
        if ROLES[role] == "system":
            if not isinstance(content, str):
                raise _fail(f"{where}.content", "a system or developer message holds text only.")
            self.system(content)
        elif role == "assistant" and not isinstance(content, str):
            raise _fail(f"{where}.content", "an assistant message holds text only.")
        else:
            self.messages.append({"role": ROLES[role], "content": content})

    def _call(self, item: dict[str, Any], where: str) -> None:
        call_id, name = _text(item, "call_id", where), _text(item, "name", where)
        namespace = _text(item, "namespace", where, required=False)
        assert call_id is not None and name is not None
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": flat_name(self.names, namespace, name), "arguments": _arguments(item, where)},
        }
        self.call_ids.add(call_id)
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses request as an OpenAI chat completions body (without `model`)."""
    _check_fields(body)
    _check_format(body.get("text"))
    offered = offered_tools(body.get("tools"))
    conversation = _Conversation(offered.names)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        if instructions:
            conversation.system(instructions)
    elif isinstance(instructions, list):
        for n, item in enumerate(instructions):
            conversation.item(item, f"instructions.{n}")
    elif instructions is not None:
        raise _fail("instructions", "must be a string or a list of input items.")
    given = body.get("input")
    if isinstance(given, str):
        conversation.messages.append({"role": "user", "content": given})
    elif isinstance(given, list) and given:
        for n, item in enumerate(given):
            conversation.item(item, f"input.{n}")
    else:
        raise _fail("input", "required, a string or a non-empty list of input items.")
    if not any(m["role"] != "system" for m in conversation.messages):
        raise _fail("input", "holds no user message.")
    chat: dict[str, Any] = {"messages": conversation.messages, "stream": bool(body.get("stream"))}
    if tools := _chosen(body.get("tool_choice"), offered):
        chat["tools"] = tools
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _fail("max_output_tokens", "must be a whole number of at least 1.")
        chat["max_tokens"] = max_tokens
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        if (value := _number(body, name, low, high)) is not None:
            chat[name] = value
    return chat
