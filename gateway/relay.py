"""The answer to a `/v1/` request once it is known who asks and which server answers: sent to the
model server, its answer relayed (a stream event by event, each in the client's API), measured,
and recorded. Shared by the Django views (gateway/views.py) and the fast path (gateway/fastpath.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import httpx
from asgiref.sync import sync_to_async
from django.http import JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from gateway.anthropic_request import wants_thinking
from gateway.errors import Flavour, GatewayError, error_response, stream_error_event
from gateway.limits.gate import caller_limits_soon, gate_enter
from gateway.logprobs import logprobs_complete
from gateway.meter import Meter
from gateway.models import GatewayApi
from gateway.responses_stream import ResponseStream, chat_to_response
from gateway.routing import Target
from gateway.translate import MessageStream, chat_to_message
from gateway.upstream import Unreachable, upstream_failure, upstream_refusal, upstream_send

LOADED_MODEL = "default_model"  # mlx-lm's server loads whatever a request names: it is sent this
UPSTREAM_PATHS = {GatewayApi.CHAT: "/v1/chat/completions", GatewayApi.COMPLETIONS: "/v1/completions"}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
GENERATED = ("content", "tool_calls", "reasoning")  # a chunk's delta holding what the model wrote


def flavour_of(api: GatewayApi) -> Flavour:
    return Flavour.ANTHROPIC if api is GatewayApi.MESSAGES else Flavour.OPENAI


async def answered(
    meter: Meter, work: Awaitable[HttpResponseBase], *, unreachable: type[Exception] | None = None
) -> HttpResponseBase:
    """`work`'s response, or its refusal in the API's shape; either way its usage is recorded.
    `unreachable`: raised instead of the refusal when the model server could not be reached,
    with nothing recorded (the fast path hands the request to Django's view, which says why)."""
    try:
        return await work
    except Unreachable as error:
        if unreachable is None:
            return _refused(meter, error)
        meter.release()
        raise unreachable from None
    except GatewayError as error:
        return _refused(meter, error)
    except asyncio.CancelledError:  # the client went away before the answer began
        meter.fail(499, "The client closed the connection before the answer began.")
        meter.record_soon()
        raise


def _refused(meter: Meter, error: GatewayError) -> HttpResponseBase:
    limit_headers = meter.passage.headers if meter.passage is not None else {}  # issue 29
    meter.fail(error.status, error.message)
    meter.record_soon()
    return _with_headers(error_response(flavour_of(meter.api), error), limit_headers)


async def answer(
    meter: Meter, api: GatewayApi, target: Target, upstream: dict[str, Any], body: dict[str, Any]
) -> HttpResponseBase:
    """Send the request to `target` and answer with what it says, whole or streamed."""
    # Issue 29: the caller's limits, then a turn in the profile's fair queue (a GatewayError 429 or
    # 503 when refused); given back by the meter when the request is recorded or released.
    assert meter.caller is not None
    limits = await caller_limits_soon(user=meter.caller.user, key=meter.caller.key)
    meter.passage = await gate_enter(
        limits=limits, profile=target.profile, flavour=flavour_of(api), who=meter.caller.user.email
    )
    limit_headers = meter.passage.headers
    url = target.base_url + UPSTREAM_PATHS.get(api, "/v1/chat/completions")
    if meter.stream:
        return _with_headers(await _open_stream(url, upstream, meter, api, body), limit_headers)
    return _with_headers(await _whole(url, upstream, meter, api, target, body), limit_headers)


def _with_headers(response: HttpResponseBase, headers: dict[str, str]) -> HttpResponseBase:
    for name, value in headers.items():
        response[name] = value
    return response


async def _sent(url: str, upstream: dict[str, Any], *, stream: bool) -> httpx.Response:
    try:
        return await upstream_send(url, upstream, stream=stream)
    except httpx.HTTPError as exc:
        raise upstream_failure(exc) from None


async def _whole(
    url: str, upstream: dict[str, Any], meter: Meter, api: GatewayApi, target: Target, body: dict[str, Any]
) -> HttpResponseBase:
    answer = await _sent(url, upstream, stream=False)
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
    answer = await _sent(url, upstream, stream=True)
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
