"""`POST /v1/messages/count_tokens`: the number of tokens the model would read for a Messages
request, counted as its server counts them: the model's own tokenizer and chat template
(transformers, from the model's local folder, loaded once per folder) render the translated
messages and tools with the generation prompt. Never an estimate, and never a download: a model
whose files are not on this machine answers 400.

Authenticated and checked like `/v1/messages` (the caller, then the profile and whether the
caller may use it); the server need not be running. A model on another node is counted there."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from gateway.anthropic_request import prompt_of
from gateway.errors import Flavour, GatewayError, error_response
from gateway.forward import Forward, forward_destination, forward_relay, forwarded_caller, is_forwarded
from gateway.inline import anthropic_inline_guard
from gateway.routing import Caller, caller_identify, profile_permitted, profile_resolve
from gateway.views import gateway_view, parse_body
from library.local import local_model_path
from profiles.models import ServerProfile


@functools.lru_cache(maxsize=8)
def _tokenizer(folder: str) -> Any:
    """The model's tokenizer as mlx-lm's server loads it (transformers' AutoTokenizer), once."""
    from transformers import AutoTokenizer  # slow to import: only where tokens are counted

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _as_the_server_renders(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as mlx-lm's server hands them to the template (its `process_message_content`):
    text parts joined, no content as "", tool call arguments as objects."""
    rendered = copy.deepcopy(messages)
    for message in rendered:
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        elif content is None:
            message["content"] = ""
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str) and function["arguments"]:
                function["arguments"] = json.loads(function["arguments"])
    return rendered


def prompt_tokens(profile: ServerProfile, prompt: dict[str, Any]) -> int:
    """How many tokens `prompt` (messages, tools) is for the profile's model and template."""
    folder = local_model_path(profile.model)
    if folder is None:
        raise GatewayError(400, f"'{profile.name}': the model's files are not on this machine, so nothing can count.")
    try:
        tokenizer = _tokenizer(str(Path(folder)))
    except (OSError, ValueError) as exc:
        raise GatewayError(400, f"'{profile.name}': its tokenizer could not be read ({type(exc).__name__}).") from None
    kwargs: dict[str, Any] = dict(profile.chat_template_args or {})
    if profile.chat_template:
        kwargs["chat_template"] = profile.chat_template
    elif tokenizer.chat_template is None:
        raise GatewayError(400, f"'{profile.name}': the model has no chat template, so its prompt cannot be counted.")
    try:
        ids = tokenizer.apply_chat_template(
            _as_the_server_renders(prompt["messages"]),
            tools=prompt.get("tools"),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **kwargs,
        )
    except Exception as exc:  # the template's own refusal (raise_exception) or error
        raise GatewayError(400, f"The model's chat template refused the conversation: {exc}") from None
    return len(ids)


def _counted(request: HttpRequest) -> tuple[int | None, Forward | None, Caller]:
    caller = forwarded_caller(request) if is_forwarded(request) else caller_identify(request)
    body = parse_body(request)
    anthropic_inline_guard(body.get("messages"))
    prompt = prompt_of(body)
    profile = profile_permitted(caller, profile_resolve(caller, body["model"]))
    if not profile.node.is_local:
        return None, forward_destination(request, profile), caller
    return prompt_tokens(profile, prompt), None, caller


@gateway_view
async def count_tokens(request: HttpRequest) -> HttpResponseBase:
    try:
        if request.method != "POST":
            raise GatewayError(405, "Use POST.", headers={"Allow": "POST"})
        tokens, forward, caller = await sync_to_async(_counted)(request)
        if forward is not None:
            return await forward_relay(request, forward, caller, Flavour.ANTHROPIC)
    except GatewayError as error:
        return error_response(Flavour.ANTHROPIC, error)
    return JsonResponse({"input_tokens": tokens})
