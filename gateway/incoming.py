"""A `/v1/` request's body: parsed once, checked, and turned into what the model server is sent
(the same rules for the Django views and the fast path)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from core.jsontext import not_text_at
from gateway.errors import GatewayError
from gateway.inline import anthropic_inline_guard, openai_inline_guard
from gateway.models import GatewayApi
from gateway.relay import LOADED_MODEL
from gateway.responses_request import responses_to_chat
from gateway.translate import messages_to_chat
from servers.promptfit import prompt_fit

# mlx-lm's server loads whatever these name; the gateway always sends the loaded model's own key.
LOADING_FIELDS = ("model", "draft_model", "adapters")


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # Python's json reads NaN and Infinity; JSON has neither


def body_bytes(request: HttpRequest) -> bytes:
    """The request's body; one over MLXM_MAX_BODY_BYTES is a 400 in the API's shape, never
    Django's HTML page."""
    try:
        return request.body
    except RequestDataTooBig:
        raise GatewayError(
            400, f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (MLXM_MAX_BODY_BYTES)."
        ) from None


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON body, checked for what every generating endpoint needs."""
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
        raise GatewayError(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"].strip():
        raise GatewayError(400, "model: required, the name of a model (GET /v1/models lists them).")
    if (path := not_text_at(body)) is not None:
        where = ".".join(path) or "The body"
        raise GatewayError(400, f"{where}: not valid text (a lone UTF-16 surrogate, such as \\ud800).")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "stream: must be true or false.")
    return body


def upstream_body(api: GatewayApi, body: dict[str, Any]) -> dict[str, Any]:
    """What the model server is sent: the client's request in chat completions' shape, with
    nothing in it that would make the server load a model."""
    if api is GatewayApi.MESSAGES:
        anthropic_inline_guard(body.get("messages"))
        upstream = messages_to_chat(body, takes_images=True)  # images: to vision models only (kind_guard)
    elif api is GatewayApi.RESPONSES:
        upstream = responses_to_chat(body)
        openai_inline_guard(upstream["messages"])  # images are data: URLs already; this says it twice
    else:
        if api is GatewayApi.CHAT and not isinstance(body.get("messages"), list):
            raise GatewayError(400, "messages: required, a list of messages.")
        openai_inline_guard(body.get("messages"))
        if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
            raise GatewayError(400, "n: only 1 is supported (the model server gives one answer per request).")
        if api is GatewayApi.COMPLETIONS and not isinstance(body.get("prompt"), str):
            raise GatewayError(400, "prompt: required, a string.")
        upstream = {k: v for k, v in body.items() if k not in LOADING_FIELDS}
    upstream["model"] = LOADED_MODEL
    upstream["draft_model"] = LOADED_MODEL
    if upstream.get("stream"):
        upstream["stream_options"] = {"include_usage": True}
    return upstream


def prompt_text(upstream: dict[str, Any]) -> str:
    """The words the model will read: a completion's prompt, or every message's text (plain or
    parts) and tool calls, and the tools (an agent's tools can be most of its prompt)."""
    if isinstance(upstream.get("prompt"), str):
        return str(upstream["prompt"])
    texts: list[str] = [json.dumps(upstream["tools"])] if isinstance(upstream.get("tools"), list) else []
    for message in upstream.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part["text"]) for part in content if isinstance(part, dict) and "text" in part)
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            texts.append(json.dumps(message["tool_calls"]))
    return "\n".join(texts)


def guard_prompt_fit(upstream: dict[str, Any], model: str) -> None:
    """The same rule as the server page's chat: a prompt the context cannot hold is refused here
    with a clear message, not cut or mangled by the model server, and an answer asked longer than
    the room the context leaves is capped to that room."""
    fit = prompt_fit(model=model, text=prompt_text(upstream))
    if refusal := fit.refusal():
        raise GatewayError(400, refusal)
    for limit in ("max_tokens", "max_completion_tokens"):
        asked = upstream.get(limit)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
            upstream[limit] = fit.answer_tokens(asked)
