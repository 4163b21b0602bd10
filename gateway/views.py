"""`/v1/`'s generating endpoints as Django views: the whole way, for every request the fast path
(gateway/fastpath.py) does not answer from memory: a signed-in browser, another node's forwarded
request, a key or a model not remembered yet, a server that is not running (an on-demand start,
a 503), a refusal. Async: a stream waits on the model server without holding a thread.

Each request: identify the caller and pick the model server (one hop to the ORM), parse the body,
send it upstream with `model` replaced by what that server loaded, relay the answer; the usage is
recorded off the request's path (gateway/recorder.py). What was found is remembered for the next
request (gateway/directory.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.middleware import public
from gateway.directory import directory
from gateway.errors import GatewayError
from gateway.forward import Forward, forward_destination, forward_relay, forwarded_caller, is_forwarded
from gateway.incoming import body_bytes, guard_prompt_fit, parse_body, upstream_body
from gateway.kinds import kind_guard
from gateway.meter import Meter
from gateway.models import GatewayApi
from gateway.ondemand import StartNeeded, start_and_wait
from gateway.recorder import recorder
from gateway.relay import answer, answered, flavour_of
from gateway.routing import ForwardNeeded, Target, caller_identify, profile_resolve, target_of
from gateway.sampling import sampling_guard
from profiles.models import ServerProfile
from servers.services import server_use_begin


def gateway_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Open to the middleware (the view authenticates by key or session itself), no CSRF
    middleware (keys need none; a session's token is checked in `caller_identify`)."""
    return csrf_exempt(public(view))


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    upstream: dict[str, Any]
    target: Target | None  # None: an on-demand model that must be started first, or another node's
    forward: Forward | None = None  # another node serves the model: the request goes there


def _prepare(request: HttpRequest, meter: Meter, api: GatewayApi) -> Prepared:
    """Who asks (first: nothing about the body is said to a stranger), the body, the server;
    a running server is counted as in use from here (one hop to the ORM for all of it)."""
    generation = directory.generation  # before the reads: what they find is remembered only if nothing changed since
    meter.caller = forwarded_caller(request) if is_forwarded(request) else caller_identify(request)
    body = parse_body(body_bytes(request))
    meter.stream, meter.model_name = bool(body.get("stream")), body["model"]
    upstream = upstream_body(api, body)
    try:
        target: Target | None = _target_in_use(meter, body["model"], lambda p: kind_guard(api, p, upstream))
    except StartNeeded as needed:
        meter.profile, target = needed.profile, None
    except ForwardNeeded as needed:  # that node checks the rest and records the usage
        meter.profile = needed.profile
        return Prepared(body=body, upstream=upstream, target=None, forward=forward_destination(request, needed.profile))
    assert meter.profile is not None
    sampling_guard(upstream, meter.profile.model)
    guard_prompt_fit(upstream, meter.profile.model)
    if target is not None:
        directory.remember_found(
            request, caller=meter.caller, model=body["model"], target=target, generation=generation
        )
    return Prepared(body=body, upstream=upstream, target=target)


def _target_in_use(meter: Meter, model: str, guard: Callable[[ServerProfile], None] | None = None) -> Target:
    assert meter.caller is not None
    meter.profile = profile_resolve(meter.caller, model)  # before the checks: a refusal is counted under its name
    if guard is not None:  # what the model's kind answers, before its state (gateway/kinds.py)
        guard(meter.profile)
    target = target_of(meter.caller, meter.profile)
    if recorder.begin(target.profile):
        server_use_begin(profile=target.profile)
    meter.in_use = True
    return target


async def _started_target(meter: Meter, model: str) -> Target:
    """Start the on-demand model (or join the start under way), then resolve it again."""
    assert meter.caller is not None and meter.profile is not None
    await start_and_wait(profile=meter.profile, by=meter.caller.user)
    try:
        return await sync_to_async(_target_in_use)(meter, model)
    except StartNeeded:  # stopped again in the instant since it ran
        raise GatewayError(503, f"'{model}' stopped again before the request could reach it.") from None


@gateway_view
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.CHAT)


@gateway_view
async def completions(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.COMPLETIONS)


@gateway_view
async def messages(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.MESSAGES)


@gateway_view
async def responses(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.RESPONSES)


async def _relay(request: HttpRequest, api: GatewayApi) -> HttpResponseBase:
    meter = Meter(api=api, stream=False)
    return await answered(meter, _relayed(request, api, meter))


async def _relayed(request: HttpRequest, api: GatewayApi, meter: Meter) -> HttpResponseBase:
    if request.method != "POST":
        raise GatewayError(405, "Use POST.", headers={"Allow": "POST"})
    await directory.current()
    prepared = await sync_to_async(_prepare)(request, meter, api)
    if prepared.forward is not None:
        return await forwarded(request, prepared.forward, meter)
    target = prepared.target or await _started_target(meter, prepared.body["model"])
    response = await answer(meter, api, target, prepared.upstream, prepared.body)
    return await _whole_under_wsgi(request, response)


async def forwarded(request: HttpRequest, forward: Forward, meter: Meter) -> HttpResponseBase:
    """Relay the other node's answer; its usage is recorded there, unless it could not be reached."""
    caller, meter.caller = meter.caller, None
    assert caller is not None
    try:
        response = await forward_relay(request, forward, caller, flavour_of(meter.api))
    except GatewayError:
        meter.caller = caller
        raise
    return await _whole_under_wsgi(request, response)


async def _whole_under_wsgi(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Under WSGI (`runserver`, Django's test live server) Django reads an async stream in a new event
    loop, where the upstream connection opened in this one cannot be read: read it all here instead
    (the answer arrives at once, not token by token). gunicorn serves ASGI and streams."""
    if not isinstance(request, WSGIRequest) or not isinstance(response, StreamingHttpResponse):
        return response
    response.streaming_content = [chunk async for chunk in response]
    return response
