"""What proves a model server ready, per engine and kind: the model has answered one request of
its own kind. mlx-lm: a one-token /v1/completions. mlx-vlm (which has no /v1/completions, and
loads whatever model a request names, so each request names the model it preloaded): a one-token
chat for chat and vision, one embedding of a short text, one scored pair for a reranker."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any

from profiles.models import Engine, Kind, ServerProfile


@dataclass(frozen=True)
class ReadyRequest:
    path: str
    body: dict[str, Any]
    answer_key: str  # the answer's field that must hold a non-empty list
    what: str = "one-token generation"  # as the events and errors say it
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


# mlx-lm's: one token of any prompt proves the model is loaded and can generate.
READY_REQUEST = ReadyRequest("/v1/completions", {"prompt": "Hello", "max_tokens": 1, "temperature": 0.0}, "choices")


def ready_request(profile: ServerProfile) -> ReadyRequest:
    if profile.engine != Engine.MLX_VLM:
        return READY_REQUEST
    model = profile.model
    if profile.kind == Kind.EMBEDDINGS:
        return ReadyRequest("/v1/embeddings", {"model": model, "input": "Hello"}, "data", "one embedding")
    if profile.kind == Kind.RERANK:
        pair = {"model": model, "query": "Hello", "documents": ["Hello"]}
        return ReadyRequest("/v1/rerank", pair, "results", "one scored pair")
    messages = [{"role": "user", "content": "Hello"}]
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0.0}
    return ReadyRequest("/v1/chat/completions", body, "choices")


def ready_answer(host: str, port: int, *, timeout: float, request: ReadyRequest = READY_REQUEST) -> str | None:
    """POST the readiness request; None when the model answered, else what went wrong."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", request.path, json.dumps(request.body), request.headers)
        response = conn.getresponse()
        body = response.read(65_536)
    except TimeoutError:
        return f"No answer to a {request.what} within {timeout:g} s."
    except (OSError, http.client.HTTPException) as exc:
        return f"The {request.what} failed: {exc or type(exc).__name__}."
    finally:
        conn.close()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if response.status == 200 and isinstance(answer, dict) and answer.get(request.answer_key):
        return None
    error = answer.get("error") or answer.get("detail") if isinstance(answer, dict) else None
    detail = str(error) if error else body[:200].decode("utf-8", "replace").strip()
    return f"The {request.what} answered HTTP {response.status}: {detail or 'no body'}."
