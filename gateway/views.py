"""`/v1/`: the OpenAI- and Anthropic-compatible endpoint. Async views: a stream waits on the model
server without holding a thread, so one worker relays many streams while it serves pages.

Each request: parse the body, identify the caller and pick the model server (one hop to the ORM),
send the body upstream with `model` replaced by what that server loaded, relay the answer, then
record usage off the request's path.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.middleware import public
from core.jsontext import not_text_at
from gateway.anthropic_request import wants_thinking
from gateway.errors import Flavour, GatewayError, error_response, stream_error_event
from gateway.forward import Forward, forward_destination, forward_relay, forwarded_caller, is_forwarded
from gateway.inline import anthropic_inline_guard, openai_inline_guard
from gateway.kinds import kind_guard
from gateway.logprobs import logprobs_complete
from gateway.meter import Meter
from gateway.models import GatewayApi
from gateway.ondemand import StartNeeded, start_and_wait
from gateway.responses_request import responses_to_chat
from gateway.responses_stream import ResponseStream, chat_to_response
from gateway.routing import ForwardNeeded, Target, caller_identify, profile_resolve, target_of
from gateway.sampling import sampling_guard
from gateway.translate import MessageStream, chat_to_message, messages_to_chat
from gateway.upstream import upstream_failure, upstream_refusal, upstream_send
from profiles.models import ServerProfile
from servers.promptfit import prompt_fit
from servers.services import server_use_begin

# mlx-lm's server loads whatever these name; the gateway always sends the loaded model's own key.
LOADED_MODEL = "default_model"
LOADING_FIELDS = ("model", "draft_model", "adapters")
UPSTREAM_PATHS = {GatewayApi.CHAT: "/v1/chat/completions", GatewayApi.COMPLETIONS: "/v1/completions"}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
GENERATED = ("content", "tool_calls", "reasoning")  # a chunk's delta holding what the model wrote


def gateway_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Open to the middleware (the view authenticates by key or session itself), no CSRF
    middleware (keys need none; a session's token is checked in `caller_identify`)."""
    return csrf_exempt(public(view))


def _flavour(api: GatewayApi) -> Flavour:
    return Flavour.ANTHROPIC if api is GatewayApi.MESSAGES else Flavour.OPENAI


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # Python's json reads NaN and Infinity; JSON has neither


def parse_body(request: HttpRequest) -> dict[str, Any]:
    try:
        raw = request.body
    except RequestDataTooBig:  # never Django's HTML 400
        raise GatewayError(
            400, f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (MLXM_MAX_BODY_BYTES)."
        ) from None
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


def _upstream_body(api: GatewayApi, body: dict[str, Any]) -> dict[str, Any]:
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


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    upstream: dict[str, Any]
    target: Target | None  # None: an on-demand model that must be started first, or another node's
    forward: Forward | None = None  # another node serves the model: the request goes there


def _prompt_text(upstream: dict[str, Any]) -> str:
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


def _guard_prompt_fit(upstream: dict[str, Any], model: str) -> None:
    """The same rule as the server page's chat: a prompt the context cannot hold is refused here
    with a clear message, not cut or mangled by the model server, and an answer asked longer than
    the room the context leaves is capped to that room."""
    fit = prompt_fit(model=model, text=_prompt_text(upstream))
    if refusal := fit.refusal():
        raise GatewayError(400, refusal)
    for limit in ("max_tokens", "max_completion_tokens"):
        asked = upstream.get(limit)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
            upstream[limit] = fit.answer_tokens(asked)


def _prepare(request: HttpRequest, meter: Meter, api: GatewayApi) -> Prepared:
    """Who asks (first: nothing about the body is said to a stranger), the body, the server;
    a running server is counted as in use from here (one hop to the ORM for all of it)."""
    meter.caller = forwarded_caller(request) if is_forwarded(request) else caller_identify(request)
    body = parse_body(request)
    meter.stream, meter.model_name = bool(body.get("stream")), body["model"]
    upstream = _upstream_body(api, body)
    try:
        target: Target | None = _target_in_use(meter, body["model"], lambda p: kind_guard(api, p, upstream))
    except StartNeeded as needed:
        meter.profile, target = needed.profile, None
    except ForwardNeeded as needed:  # that node checks the rest and records the usage
        meter.profile = needed.profile
        return Prepared(body=body, upstream=upstream, target=None, forward=forward_destination(request, needed.profile))
    assert meter.profile is not None
    sampling_guard(upstream, meter.profile.model)
    _guard_prompt_fit(upstream, meter.profile.model)
    return Prepared(body=body, upstream=upstream, target=target)


def _target_in_use(meter: Meter, model: str, guard: Callable[[ServerProfile], None] | None = None) -> Target:
    assert meter.caller is not None
    meter.profile = profile_resolve(meter.caller, model)  # before the checks: a refusal is counted under its name
    if guard is not None:  # what the model's kind answers, before its state (gateway/kinds.py)
        guard(meter.profile)
    target = target_of(meter.caller, meter.profile)
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
    flavour = _flavour(api)
    meter = Meter(api=api, stream=False)
    try:
        if request.method != "POST":
            raise GatewayError(405, "Use POST.", headers={"Allow": "POST"})
        prepared = await sync_to_async(_prepare)(request, meter, api)
        if prepared.forward is not None:
            return await _forwarded(request, prepared.forward, meter, flavour)
        target = prepared.target or await _started_target(meter, prepared.body["model"])
        url = target.base_url + UPSTREAM_PATHS.get(api, "/v1/chat/completions")
        if meter.stream:
            stream = await _open_stream(url, prepared.upstream, meter, api, prepared.body)
            return await _whole_under_wsgi(request, stream)
        return await _whole(url, prepared.upstream, meter, api, target, prepared.body)
    except GatewayError as error:
        meter.fail(error.status, error.message)
        meter.record_soon()
        return error_response(flavour, error)
    except asyncio.CancelledError:  # the client went away before the answer began
        meter.fail(499, "The client closed the connection before the answer began.")
        meter.record_soon()
        raise


async def _forwarded(request: HttpRequest, forward: Forward, meter: Meter, flavour: Flavour) -> HttpResponseBase:
    """Relay the other node's answer; its usage is recorded there, unless it could not be reached."""
    caller, meter.caller = meter.caller, None
    assert caller is not None
    try:
        response = await forward_relay(request, forward, caller, flavour)
    except GatewayError:
        meter.caller = caller
        raise
    return await _whole_under_wsgi(request, response)


async def _whole(
    url: str, upstream: dict[str, Any], meter: Meter, api: GatewayApi, target: Target, body: dict[str, Any]
) -> HttpResponseBase:
    try:
        answer = await upstream_send(url, upstream, stream=False)
    except httpx.HTTPError as exc:
        raise upstream_failure(exc) from None
    if answer.status_code != 200:
        raise upstream_refusal(answer.status_code, answer.text)
    try:
        data = answer.json()
    except ValueError:
        raise GatewayError(502, "The model server's answer was not JSON.") from None
    meter.usage(data.get("usage"))
    meter.first_token_at = time.perf_counter()
    if api is GatewayApi.MESSAGES:
        data = chat_to_message(data, model=target.profile.name, thinking=wants_thinking(body))
    elif api is GatewayApi.RESPONSES:
        data = chat_to_response(data, body)
    else:
        data["model"] = meter.model_name  # the name the client sent, as in every streamed chunk
        if upstream.get("logprobs"):
            await sync_to_async(logprobs_complete)(data, model=target.profile.model)
    meter.record_soon()  # after the translation: a GatewayError in it is recorded by _relay
    return JsonResponse(data)


async def _open_stream(
    url: str, upstream: dict[str, Any], meter: Meter, api: GatewayApi, body: dict[str, Any]
) -> HttpResponseBase:
    """Open the upstream stream first, so that a refusal still gets its own status and JSON."""
    try:
        answer = await upstream_send(url, upstream, stream=True)
    except httpx.HTTPError as exc:
        raise upstream_failure(exc) from None
    if answer.status_code != 200:
        text = (await answer.aread()).decode(errors="replace")
        await answer.aclose()
        raise upstream_refusal(answer.status_code, text)
    if api is GatewayApi.MESSAGES:
        model = body["model"] if meter.profile is None else meter.profile.name
        events = _translated(answer, meter, MessageStream(model, thinking=wants_thinking(body)), Flavour.ANTHROPIC)
    elif api is GatewayApi.RESPONSES:
        events = _responses_events(answer, meter, ResponseStream(body))
    else:
        wants_usage = (
            bool((body.get("stream_options") or {}).get("include_usage"))
            if isinstance(body.get("stream_options"), dict)
            else False
        )
        events = _openai_events(answer, meter, keep_usage_chunk=wants_usage, model=body["model"])
    return StreamingHttpResponse(events, content_type="text/event-stream", headers=STREAM_HEADERS)


async def _whole_under_wsgi(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Under WSGI (`runserver`, Django's test live server) Django reads an async stream in a new event
    loop, where the upstream connection opened in this one cannot be read: read it all here instead
    (the answer arrives at once, not token by token). gunicorn serves ASGI and streams."""
    if not isinstance(request, WSGIRequest) or not isinstance(response, StreamingHttpResponse):
        return response
    response.streaming_content = [chunk async for chunk in response]
    return response


class StreamCut(Exception):
    """The model server's stream ended before its `[DONE]`: it died or was killed."""


async def _chunks(answer: httpx.Response, meter: Meter) -> AsyncIterator[tuple[bytes, dict[str, Any] | None]]:
    """Each complete server-sent event as it arrives, with its JSON data (None for `[DONE]`)."""
    buffer = b""
    async for piece in answer.aiter_raw():
        buffer += piece
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            payload = event.removeprefix(b"data: ").strip()
            if payload == b"[DONE]":
                yield event, None
                return
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if data.get("choices"):
                choice = data["choices"][0]
                delta = choice.get("delta") or {}
                if any(delta.get(part) for part in GENERATED) or choice.get("text"):
                    meter.token()
            elif data.get("usage"):
                meter.usage(data["usage"])
            yield event, data
    raise StreamCut


async def _guarded(
    answer: httpx.Response,
    meter: Meter,
    flavour: Flavour,
    events: AsyncIterator[bytes],
    failed: Callable[[int, str], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """Relay `events`; an upstream failure becomes an error event (`failed` writes it, else the
    flavour's); a client that goes away (the ASGI handler cancels us) closes the upstream
    connection; usage is recorded either way."""
    failed = failed or (lambda status, message: stream_error_event(flavour, status, message))
    try:
        async for event in events:
            yield event
    except StreamCut:
        meter.fail(502, "The model server stopped in the middle of the answer.")
        yield failed(502, meter.error)
    except GatewayError as error:  # an answer that cannot be translated (a tool call's arguments)
        meter.fail(error.status, error.message)
        yield failed(error.status, error.message)
    except httpx.HTTPError as exc:
        failure = upstream_failure(exc)
        meter.fail(failure.status, failure.message)
        yield failed(failure.status, failure.message)
    except BaseException:
        meter.fail(499, "The client closed the connection before the answer ended.")
        raise
    finally:
        await answer.aclose()
        meter.record_soon()


UPSTREAM_MODEL_FIELD = b'"model": "' + LOADED_MODEL.encode() + b'"'  # as mlx-lm's json.dumps writes it


def _named(event: bytes, data: dict[str, Any], model: str) -> bytes:
    """The chunk with `model` as the client named it: a byte replacement (the line is not built
    again), or, should the server write it otherwise, the JSON written anew."""
    if data.get("model") == model:
        return event
    renamed = event.replace(UPSTREAM_MODEL_FIELD, b'"model": ' + json.dumps(model).encode(), 1)
    if renamed == event:
        return b"data: " + json.dumps({**data, "model": model}).encode()
    return renamed


def _openai_events(answer: httpx.Response, meter: Meter, *, keep_usage_chunk: bool, model: str) -> AsyncIterator[bytes]:
    async def events() -> AsyncIterator[bytes]:
        async for event, data in _chunks(answer, meter):
            if data is not None and not data.get("choices") and data.get("usage") and not keep_usage_chunk:
                continue  # asked for by the gateway, not by this client
            yield (event if data is None else _named(event, data, model)) + b"\n\n"

    return _guarded(answer, meter, Flavour.OPENAI, events())


class Translator(Protocol):
    """Another API's stream events from chat completion chunks (MessageStream, ResponseStream)."""

    def start(self) -> bytes: ...
    def chunk(self, data: dict[str, Any]) -> bytes: ...
    def finish(self, prompt_tokens: int | None, completion_tokens: int | None) -> bytes: ...


def _translated(
    answer: httpx.Response,
    meter: Meter,
    translator: Translator,
    flavour: Flavour,
    failed: Callable[[int, str], bytes] | None = None,
) -> AsyncIterator[bytes]:
    async def events() -> AsyncIterator[bytes]:
        yield translator.start()
        async for _event, data in _chunks(answer, meter):
            if data is None:
                completion = meter.completion_tokens if meter.completion_tokens is not None else meter.counted_tokens
                yield translator.finish(meter.prompt_tokens, completion)
            elif out := translator.chunk(data):
                yield out

    return _guarded(answer, meter, flavour, events(), failed)


def _responses_events(answer: httpx.Response, meter: Meter, translator: ResponseStream) -> AsyncIterator[bytes]:
    return _translated(answer, meter, translator, Flavour.OPENAI, lambda _status, message: translator.failed(message))
