"""The one pooled HTTP client per worker (and event loop) that talks to the model servers, the
POST that sends a request to one, and what its failures and refusals mean to the client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from django.conf import settings

from gateway.errors import GatewayError

_clients: dict[int, httpx.AsyncClient] = {}


def upstream_client() -> httpx.AsyncClient:
    """Keep-alive connections to the model servers are reused across requests; a gunicorn worker
    runs one event loop, tests may run several (hence one client per loop)."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.MLXM_GATEWAY_TIMEOUT, connect=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            trust_env=False,  # never through a proxy: the servers are on loopback
        )
        _clients[loop_id] = client
    return client


class Unreachable(GatewayError):
    """The model server could not be reached: nothing was sent (it stopped, or is stopping)."""


def upstream_failure(exc: httpx.HTTPError) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError(504, "The model server did not answer in time.")
    if isinstance(exc, httpx.ConnectError):
        return Unreachable(502, "Could not connect to the model server: it may have just stopped or crashed.")
    return GatewayError(502, f"The model server failed while answering ({type(exc).__name__}).")


def upstream_refusal(status: int, text: str) -> GatewayError:
    """A 4xx from the server is about the request (a bad parameter): 400; anything else: 502."""
    detail = text.strip()[:300]
    if 400 <= status < 500:
        return GatewayError(400, f"The model server refused the request: {detail or status}")
    return GatewayError(502, f"The model server answered {status}" + (f": {detail}" if detail else "."))


# The model server dropped or reset the connection before any answer: mlx-lm's server closes every
# connection after its response (a kept-alive one may be gone), and it listens with a backlog of 5,
# so a burst of new connections (32 streams at once) can be reset before it accepts them.
DROPPED_BEFORE_ANSWER = (httpx.RemoteProtocolError, httpx.ReadError)
RESEND_AFTER = 0.05  # seconds: room for the server to accept what is waiting


async def upstream_send(url: str, upstream: dict[str, Any], *, stream: bool) -> httpx.Response:
    """POST to the model server; once more if the connection was dropped before any answer."""
    client = upstream_client()
    for attempt in (1, 2):
        try:
            return await client.send(client.build_request("POST", url, json=upstream), stream=stream)
        except DROPPED_BEFORE_ANSWER:
            if attempt == 2:
                raise
            await asyncio.sleep(RESEND_AFTER)
    raise AssertionError("unreachable")
