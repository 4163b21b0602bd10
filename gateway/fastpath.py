"""`/v1/`'s generating endpoints for API clients, answered from memory in front of Django: a
plain ASGI application (mlxmanager/asgi.py hands it the POSTs), no middleware, no thread hop, no
database read. It takes a request only when its key and its model are both remembered
(gateway/directory.py) and the model's server answers here; everything else, and every request
from a browser (an `Origin`: CORS and sessions are Django's) or another node, goes to Django's
view (gateway/views.py) with its body replayed, which answers it the whole way and remembers
what it found. Both send the request upstream and relay the answer with the same code
(gateway/relay.py), so an answer does not depend on which one served it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.http.response import HttpResponseBase

from gateway.directory import directory
from gateway.embeddings import ENDPOINT, checked_body, embedded
from gateway.errors import GatewayError
from gateway.forward import FORWARD_HEADERS
from gateway.incoming import guard_prompt_fit, parse_body, upstream_body
from gateway.keys import key_from_headers, key_hash
from gateway.kinds import kind_guard, refuse_wrong_endpoint
from gateway.meter import Meter
from gateway.models import GatewayApi
from gateway.recorder import recorder
from gateway.relay import answer, answered
from gateway.routing import Target, profile_may_use
from gateway.sampling import sampling_guard
from servers.services import server_use_begin

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Application = Callable[..., Awaitable[None]]  # an ASGI application (Django's handler)

FAST_APIS = {
    "/v1/chat/completions": GatewayApi.CHAT,
    "/v1/completions": GatewayApi.COMPLETIONS,
    "/v1/messages": GatewayApi.MESSAGES,
    "/v1/responses": GatewayApi.RESPONSES,
    "/v1/embeddings": GatewayApi.EMBEDDINGS,
    "/v1/rerank": GatewayApi.RERANK,
}
EMBEDDING_APIS = frozenset({GatewayApi.EMBEDDINGS, GatewayApi.RERANK})
COUNT_IN_THREAD_OVER = 16_384  # bytes of body: its tokens are counted off the event loop
DJANGO_ONLY_HEADERS = frozenset({b"origin", b"cookie", *(name.lower().encode() for name in FORWARD_HEADERS)})


class Declined(Exception):
    """Memory cannot answer this request: Django's view will."""


def fast_api(scope: Scope) -> GatewayApi | None:
    """The API of a request the fast path may take, from its method and path alone."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    return FAST_APIS.get(scope.get("path", ""))


async def serve(scope: Scope, receive: Receive, send: Send, *, api: GatewayApi, django: Application) -> None:
    headers = _headers(scope)
    read = await _read_body(receive)
    if read is None:
        return  # the client left before it finished sending
    body, complete = read
    meter = Meter(api=api, stream=False)
    try:
        if headers is None or not complete or not await directory.current():
            raise Declined
        target, request, upstream = _from_memory(headers, body, meter)
    except Declined:
        await django(scope, _replayed(body, receive, more_body=not complete), send)
        return
    except GatewayError as error:  # about the body: answered here, as Django's view would
        inbox = Inbox(receive)
        try:
            await _respond(answered(meter, _raise(error)), inbox, send)
        finally:
            inbox.close()
        return
    work = answered(meter, _answer(meter, target, request, upstream, len(body)), unreachable=Declined)
    inbox = Inbox(receive)
    try:
        await _respond(work, inbox, send)
    except Declined:  # the server stopped since it was remembered: Django's view says so, or starts it
        directory.forget()
        await django(scope, _replayed(body, inbox.receive, more_body=False), send)
    finally:
        inbox.close()


async def _raise(error: GatewayError) -> HttpResponseBase:
    raise error


def _headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The request's headers by lowercase name, or None when one of them is for Django alone, or
    its Host is not one of ALLOWED_HOSTS (Django's view refuses it)."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        if name in DJANGO_ONLY_HEADERS:
            return None
        headers[name] = value
    host = headers.get(b"host", b"").decode("latin-1")
    if not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return None
    return headers


async def _read_body(receive: Receive) -> tuple[bytes, bool] | None:
    """The body, and whether it is whole (False: longer than MLXM_MAX_BODY_BYTES, the rest not
    read yet: Django's view refuses it in the API's shape)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        parts.append(part)
        size += len(part)
        if not message.get("more_body"):
            return b"".join(parts), True
        if size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return b"".join(parts), False


def _replayed(body: bytes, receive: Receive, *, more_body: bool) -> Receive:
    """`receive` as if the body had not been read yet: Django reads it again."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more_body}
        return await receive()

    return replay


def _from_memory(
    headers: dict[bytes, bytes], raw: bytes, meter: Meter
) -> tuple[Target, dict[str, Any], dict[str, Any]]:
    """The remembered server, the body and what the server is sent; Declined unless the key and
    the model are both remembered and the key may use the model; a GatewayError about the body
    is the caller's answer."""
    secret = key_from_headers(
        headers.get(b"authorization", b"").decode("latin-1"), headers.get(b"x-api-key", b"").decode("latin-1")
    )
    caller = directory.caller(key_hash(secret)) if secret and len(secret) <= 200 else None
    if caller is None:
        raise Declined
    meter.caller = caller
    body = parse_body(raw)
    embedding = meter.api in EMBEDDING_APIS
    meter.stream, meter.model_name = bool(body.get("stream")) and not embedding, body["model"]
    upstream = checked_body(meter.api, body) if embedding else upstream_body(meter.api, body)
    target = directory.target(body["model"])
    if target is None or not profile_may_use(caller, target.profile):
        meter.caller = None  # Django's view identifies the caller again and records the request
        raise Declined
    meter.profile = target.profile
    if embedding:  # as gateway/embeddings.py's view does
        refuse_wrong_endpoint(target.profile, ENDPOINT[meter.api])
        upstream["model"] = target.profile.model
    else:
        kind_guard(meter.api, target.profile, upstream)  # as Django's view does (gateway/kinds.py)
    return target, body, upstream


async def _answer(
    meter: Meter, target: Target, body: dict[str, Any], upstream: dict[str, Any], size: int
) -> HttpResponseBase:
    if recorder.begin(target.profile):
        await sync_to_async(server_use_begin, thread_sensitive=False)(profile=target.profile)
    meter.in_use = True
    if meter.api in EMBEDDING_APIS:
        return await embedded(meter, meter.api, target, body, upstream)
    sampling_guard(upstream, target.profile.model)
    if size > COUNT_IN_THREAD_OVER:
        await sync_to_async(guard_prompt_fit, thread_sensitive=False)(upstream, target.profile.model)
    else:
        guard_prompt_fit(upstream, target.profile.model)
    return await answer(meter, meter.api, target, upstream, body)


class Inbox:
    """The messages a client sends after its body, read by one task from start to end: waiting
    for a disconnect must not cancel a pending `receive` (the server could take it as the end of
    the request), since Django's view may have to read the same messages afterwards."""

    def __init__(self, receive: Receive) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.reading = asyncio.ensure_future(self._read(receive))

    async def _read(self, receive: Receive) -> None:
        while True:
            message = await receive()
            self.messages.put_nowait(message)
            if message["type"] == "http.disconnect":
                self.gone.set()
                return

    async def receive(self) -> Message:
        return await self.messages.get()

    def close(self) -> None:
        """The response is complete: the rest is not read."""
        self.reading.cancel()


async def _respond(work: Awaitable[HttpResponseBase], inbox: Inbox, send: Send) -> None:
    """Send `work`'s response; a client that goes away meanwhile cancels it (a stream's relay then
    closes its upstream connection and records the request as 499)."""
    sending = asyncio.ensure_future(_send_response(work, send))
    leaving = asyncio.ensure_future(inbox.gone.wait())
    try:
        await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, leaving):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending


async def _send_response(work: Awaitable[HttpResponseBase], send: Send) -> None:
    response = await work
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if not response.streaming:
        await send({"type": "http.response.body", "body": cast(HttpResponse, response).content})
        return
    async for part in response:  # type: ignore[attr-defined]  # an async StreamingHttpResponse
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
