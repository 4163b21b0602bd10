"""Where people reach the models: the gateway's `/v1/` on the address they reached this app at.

Model servers listen on their own ports, but those answer anyone without a key, record no usage
and load whatever `model` names: pages and the API show only this address (docs/gateway.md)."""

from __future__ import annotations

from django.http import HttpRequest

GATEWAY_PATH = "/v1"


def gateway_base_url(request: HttpRequest) -> str:
    """The OpenAI-compatible base URL a client should use: `http://<this app's host>/v1`."""
    return request.build_absolute_uri(GATEWAY_PATH)
