"""`POST /v1/embeddings` (OpenAI's shape) and `POST /v1/rerank` (the Jina/Cohere shape), answered
by mlx_vlm.server profiles of those kinds, with the same keys, on-demand starts, node forwarding
and usage records as chat.

The body is checked here and rebuilt for the model server: only text goes upstream (mlx-vlm
opens what an item names as an image or video, a URL or a file), and `model` is the model the
server preloaded, never the client's (mlx-vlm loads whatever a request names). mlx-vlm answers
floats; `encoding_format: base64` (the openai SDK's default) is packed here, as OpenAI does:
little-endian float32.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from gateway.directory import directory
from gateway.errors import Flavour, GatewayError
from gateway.forward import Forward, forward_destination, forwarded_caller, is_forwarded
from gateway.incoming import body_bytes, parse_body
from gateway.kinds import refuse_wrong_endpoint
from gateway.limits.gate import caller_limits_soon, gate_enter
from gateway.meter import Meter
from gateway.models import GatewayApi
from gateway.ondemand import StartNeeded, start_and_wait
from gateway.recorder import recorder
from gateway.relay import answered
from gateway.routing import ForwardNeeded, Target, caller_identify, profile_resolve, target_of
from gateway.upstream import upstream_failure, upstream_refusal, upstream_send
from gateway.views import forwarded, gateway_view
from servers.services import server_use_begin

MAX_ITEMS = 2048  # OpenAI's limit on inputs per request; the same for documents
MAX_TEXT = 100_000  # characters in one input, query or document
ENDPOINT = {GatewayApi.EMBEDDINGS: "embeddings", GatewayApi.RERANK: "rerank"}
UPSTREAM_PATH = {GatewayApi.EMBEDDINGS: "/v1/embeddings", GatewayApi.RERANK: "/v1/rerank"}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GatewayError(400, f"{where}: must be a non-empty string.")
    if len(value) > MAX_TEXT:
        raise GatewayError(400, f"{where}: at most {MAX_TEXT} characters.")
    return value


def _texts(value: Any, where: str, *, keyed: bool = False) -> list[str]:
    """A list of 1..MAX_ITEMS texts (`keyed`: an item may also be {"text": ...}, as Cohere sends)."""
    if not isinstance(value, list) or not value:
        raise GatewayError(400, f"{where}: must be a non-empty list of strings.")
    if len(value) > MAX_ITEMS:
        raise GatewayError(400, f"{where}: at most {MAX_ITEMS} items.")
    if keyed:
        value = [item.get("text") if isinstance(item, dict) else item for item in value]
    return [_text(item, f"{where}[{n}]") for n, item in enumerate(value)]


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """The checked request for the model server (its `model` is set once the profile is known)."""
    raw = body.get("input")
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        raise GatewayError(400, "input: token arrays are not supported; send the text.")
    texts = [_text(raw, "input")] if isinstance(raw, str) else _texts(raw, "input")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise GatewayError(400, "encoding_format: must be float or base64.")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise GatewayError(400, "dimensions: must be a whole number of at least 1.")
    return {"input": texts}


def rerank_body(body: dict[str, Any]) -> dict[str, Any]:
    upstream: dict[str, Any] = {"query": _text(body.get("query"), "query")}
    upstream["documents"] = _texts(body.get("documents"), "documents", keyed=True)
    top_n = body.get("top_n")
    if top_n is not None:
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise GatewayError(400, "top_n: must be a whole number of at least 1.")
        upstream["top_n"] = top_n
    if not isinstance(body.get("return_documents", False), bool):
        raise GatewayError(400, "return_documents: must be true or false.")
    return upstream


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    upstream: dict[str, Any]
    target: Target | None  # None: an on-demand start first, or another node's
    forward: Forward | None = None


def _target(meter: Meter, api: GatewayApi, upstream: dict[str, Any]) -> Target:
    assert meter.caller is not None
    meter.profile = profile_resolve(meter.caller, meter.model_name)
    refuse_wrong_endpoint(meter.profile, ENDPOINT[api])
    upstream["model"] = meter.profile.model  # what the server preloaded (never the client's)
    target = target_of(meter.caller, meter.profile)
    if recorder.begin(target.profile):
        server_use_begin(profile=target.profile)
    meter.in_use = True
    return target


def checked_body(api: GatewayApi, body: dict[str, Any]) -> dict[str, Any]:
    """What the model server is sent for this embeddings or rerank body (its `model` comes later)."""
    if body.get("stream"):
        raise GatewayError(400, "stream: not supported here; the answer comes whole.")
    return embeddings_body(body) if api is GatewayApi.EMBEDDINGS else rerank_body(body)


def _prepare(request: HttpRequest, meter: Meter, api: GatewayApi) -> Prepared:
    generation = directory.generation  # before the reads, as in gateway/views.py
    meter.caller = forwarded_caller(request) if is_forwarded(request) else caller_identify(request)
    body = parse_body(body_bytes(request))
    meter.model_name = body["model"]
    upstream = checked_body(api, body)
    try:
        target = _target(meter, api, upstream)
        directory.remember_found(
            request, caller=meter.caller, model=body["model"], target=target, generation=generation
        )
        return Prepared(body, upstream, target)
    except StartNeeded as needed:
        meter.profile = needed.profile
        return Prepared(body, upstream, None)
    except ForwardNeeded as needed:
        meter.profile = needed.profile
        return Prepared(body, upstream, None, forward_destination(request, needed.profile))


@gateway_view
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.EMBEDDINGS)


@gateway_view
async def rerank(request: HttpRequest) -> HttpResponseBase:
    return await _relay(request, GatewayApi.RERANK)


async def _relay(request: HttpRequest, api: GatewayApi) -> HttpResponseBase:
    meter = Meter(api=api, stream=False)
    return await answered(meter, _relayed(request, api, meter))


async def _relayed(request: HttpRequest, api: GatewayApi, meter: Meter) -> HttpResponseBase:
    if request.method != "POST":
        raise GatewayError(405, "Use POST.", headers={"Allow": "POST"})
    await directory.current()
    prepared = await sync_to_async(_prepare)(request, meter, api)
    if prepared.forward is not None:  # that node checks the rest and records the usage
        return await forwarded(request, prepared.forward, meter)
    target = prepared.target or await _started(meter, api, prepared.upstream)
    return await embedded(meter, api, target, prepared.body, prepared.upstream)


async def embedded(
    meter: Meter, api: GatewayApi, target: Target, body: dict[str, Any], upstream: dict[str, Any]
) -> HttpResponseBase:
    """The model server's embeddings or ranking, in the client's shape (for the views and the fast path)."""
    # The caller's limits and a turn in the profile's fair queue, as for chat (gateway/relay.py).
    assert meter.caller is not None
    limits = await caller_limits_soon(user=meter.caller.user, key=meter.caller.key)
    meter.passage = await gate_enter(
        limits=limits, profile=target.profile, flavour=Flavour.OPENAI, who=meter.caller.user.email
    )
    data = await _answer(target.base_url + UPSTREAM_PATH[api], upstream)
    meter.usage({**_usage(data), "completion_tokens": 0})
    answer = _embeddings_answer(data, body) if api is GatewayApi.EMBEDDINGS else _rerank_answer(data, body, upstream)
    headers = meter.passage.headers  # the meter gives the passage back as it records
    meter.record_soon()
    return JsonResponse(answer, headers=headers)


async def _started(meter: Meter, api: GatewayApi, upstream: dict[str, Any]) -> Target:
    assert meter.caller is not None and meter.profile is not None
    await start_and_wait(profile=meter.profile, by=meter.caller.user)
    try:
        return await sync_to_async(_target)(meter, api, upstream)
    except StartNeeded:
        raise GatewayError(503, f"'{meter.model_name}' stopped again before the request could reach it.") from None


async def _answer(url: str, upstream: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = await upstream_send(url, upstream, stream=False)
    except httpx.HTTPError as exc:
        raise upstream_failure(exc) from None
    if answer.status_code != 200:
        raise upstream_refusal(answer.status_code, answer.text)
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise GatewayError(502, "The model server's answer was not a JSON object.")
    return data


def _usage(data: dict[str, Any]) -> dict[str, int]:
    usage = data.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    tokens = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def _packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _embeddings_answer(data: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    items = data.get("data")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("embedding"), list) for i in items
    ):
        raise GatewayError(502, "The model server's answer held no embeddings.")
    dimensions = body.get("dimensions")
    if dimensions is not None and items and dimensions != len(items[0]["embedding"]):
        raise GatewayError(
            400,
            f"dimensions: this model's embeddings have {len(items[0]['embedding'])} dimensions "
            "and it cannot shorten them; leave dimensions out.",
        )
    base64_wanted = body.get("encoding_format") == "base64"
    out = [
        {
            "object": "embedding",
            "index": n,
            "embedding": _packed(item["embedding"]) if base64_wanted else item["embedding"],
        }
        for n, item in enumerate(items)
    ]
    return {"object": "list", "data": out, "model": body["model"], "usage": _usage(data)}


def _rerank_answer(data: dict[str, Any], body: dict[str, Any], upstream: dict[str, Any]) -> dict[str, Any]:
    results = data.get("results")
    if not isinstance(results, list):
        raise GatewayError(502, "The model server's answer held no results.")
    documents = upstream["documents"]
    out = []
    for result in results:
        index = result.get("index") if isinstance(result, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(documents):
            raise GatewayError(502, "The model server's answer named a document that was not sent.")
        item: dict[str, Any] = {"index": index, "relevance_score": result.get("relevance_score")}
        if body.get("return_documents"):
            item["document"] = {"text": documents[index]}
        out.append(item)
    return {"model": body["model"], "results": out, "usage": _usage(data)}
