"""Errors in each API's own JSON shape: OpenAI `{"error": {"message", "type", "code"}}`,
Anthropic `{"type": "error", "error": {"type", "message"}}`; never an HTML page."""

from __future__ import annotations

import json
from enum import StrEnum

from django.http import JsonResponse


class Flavour(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


# status -> (OpenAI type, OpenAI code, Anthropic type)
_KINDS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "invalid_request_error"),
    401: ("authentication_error", "invalid_api_key", "authentication_error"),
    403: ("permission_error", "model_not_allowed", "permission_error"),
    404: ("invalid_request_error", "model_not_found", "not_found_error"),
    405: ("invalid_request_error", "method_not_allowed", "invalid_request_error"),
    502: ("api_error", "upstream_failed", "api_error"),
    503: ("api_error", "model_not_running", "api_error"),
    504: ("api_error", "upstream_timeout", "timeout_error"),
}
# A limit or the queue refused (gateway/limits/): kind -> the same three, as OpenAI and Anthropic
# name them (OpenAI's `type` says which rate, its budget's code is `insufficient_quota`).
_LIMIT_KINDS: dict[str, tuple[str, str, str]] = {
    "requests": ("requests", "rate_limit_exceeded", "rate_limit_error"),
    "tokens": ("tokens", "rate_limit_exceeded", "rate_limit_error"),
    "budget": ("insufficient_quota", "insufficient_quota", "rate_limit_error"),
    "concurrency": ("requests", "concurrency_limit_exceeded", "rate_limit_error"),
    "queue_full": ("requests", "queue_full", "rate_limit_error"),
    "queue_timeout": ("api_error", "queue_timeout", "overloaded_error"),
}


class GatewayError(Exception):
    """A request the gateway answers itself, with `status` and a message for people."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}
        self.kind = kind  # one of _LIMIT_KINDS, else the status says it


def error_body(flavour: Flavour, status: int, message: str, kind: str | None = None) -> dict[str, object]:
    openai_type, code, anthropic_type = _LIMIT_KINDS.get(kind or "") or _KINDS.get(status, _KINDS[502])
    if flavour is Flavour.ANTHROPIC:
        return {"type": "error", "error": {"type": anthropic_type, "message": message}}
    return {"error": {"message": message, "type": openai_type, "code": code, "param": None}}


def error_response(flavour: Flavour, error: GatewayError) -> JsonResponse:
    response = JsonResponse(
        error_body(flavour, error.status, error.message, error.kind), status=error.status, headers=error.headers
    )
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def stream_error_event(flavour: Flavour, status: int, message: str) -> bytes:
    """What a client reading a stream gets when the stream fails after it began (both SDKs raise)."""
    data = json.dumps(error_body(flavour, status, message))
    if flavour is Flavour.ANTHROPIC:
        return f"event: error\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()
