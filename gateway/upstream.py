"""The one pooled HTTP client per worker (and event loop) that talks to the model servers."""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

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
