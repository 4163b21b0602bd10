"""`POST /v1/messages/count_tokens`: the number of tokens the model would read for a Messages
request, counted as its server counts them: the model's own tokenizer and chat template
(transformers, from the model's local folder, loaded once per folder) render the translated
messages and tools with the generation prompt, in a process of its own (gateway/token_pool.py). Never an estimate, and never a download: a model
whose files are not on this machine answers 400.

Authenticated and checked like `/v1/messages` (the caller, then the profile and whether the
caller may use it); the server need not be running. A model on another node is counted there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from gateway.anthropic_request import prompt_of
from gateway.errors import Flavour, GatewayError, error_response
from gateway.forward import Forward, forward_destination, forward_relay, forwarded_caller, is_forwarded
from gateway.incoming import parse_body
from gateway.inline import anthropic_inline_guard
from gateway.routing import Caller, caller_identify, profile_permitted, profile_resolve
from gateway.token_pool import COUNT_TIMEOUT, CountFailed, CountTimedOut, tokens_counted
from gateway.views import gateway_view
from library.local import local_model_path
from profiles.models import ServerProfile


def _count_job(profile: ServerProfile) -> tuple[str, dict[str, Any]]:
    """Where the model's files are, and the template arguments the profile gives its server."""
    folder = local_model_path(profile.model)
    if folder is None:
        raise GatewayError(400, f"'{profile.name}': the model's files are not on this machine, so nothing can count.")
    kwargs: dict[str, Any] = dict(profile.chat_template_args or {})
    if profile.chat_template:
        kwargs["chat_template"] = profile.chat_template
    return str(Path(folder)), kwargs


async def prompt_tokens(profile: ServerProfile, prompt: dict[str, Any]) -> int:
    """How many tokens `prompt` (messages, tools) is for the profile's model and template."""
    folder, kwargs = _count_job(profile)
    try:
        return await tokens_counted(folder, prompt["messages"], prompt.get("tools"), kwargs)
    except CountFailed as failed:
        raise GatewayError(400, f"'{profile.name}': {failed}") from None
    except CountTimedOut:
        raise GatewayError(
            400, f"'{profile.name}': its chat template ran for over {COUNT_TIMEOUT:g} s and was stopped."
        ) from None


def _counted(request: HttpRequest) -> tuple[ServerProfile, dict[str, Any], Forward | None, Caller]:
    caller = forwarded_caller(request) if is_forwarded(request) else caller_identify(request)
    body = parse_body(request.body)
    anthropic_inline_guard(body.get("messages"))
    prompt = prompt_of(body)
    profile = profile_permitted(caller, profile_resolve(caller, body["model"]))
    if not profile.node.is_local:
        return profile, prompt, forward_destination(request, profile), caller
    return profile, prompt, None, caller


@gateway_view
async def count_tokens(request: HttpRequest) -> HttpResponseBase:
    try:
        if request.method != "POST":
            raise GatewayError(405, "Use POST.", headers={"Allow": "POST"})
        profile, prompt, forward, caller = await sync_to_async(_counted)(request)
        if forward is not None:
            return await forward_relay(request, forward, caller, Flavour.ANTHROPIC)
        tokens = await prompt_tokens(profile, prompt)
    except GatewayError as error:
        return error_response(Flavour.ANTHROPIC, error)
    return JsonResponse({"input_tokens": tokens})
