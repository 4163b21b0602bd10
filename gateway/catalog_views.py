"""`/v1/models`, `/v1/models/{id}`, and the JSON answer to every other `/v1/` path: a client
always gets its API's error shape, never an HTML page."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from gateway.errors import Flavour, GatewayError, error_response
from gateway.kinds import capabilities
from gateway.routing import Caller, caller_identify, usable_profiles
from gateway.views import gateway_view
from library.local import local_model_path, takes_tools
from nodes.status import node_statuses
from profiles.models import ServerProfile

ANTHROPIC_PATHS = ("/v1/messages",)


def _flavour(request: HttpRequest) -> Flavour:
    anthropic = request.path.startswith(ANTHROPIC_PATHS) or "anthropic-version" in request.headers
    return Flavour.ANTHROPIC if anthropic else Flavour.OPENAI


@gateway_view
async def models(request: HttpRequest) -> HttpResponseBase:
    try:
        data = await sync_to_async(_model_list)(request)
    except GatewayError as error:
        return error_response(_flavour(request), error)
    return JsonResponse({"object": "list", "data": data, "has_more": False, "first_id": None, "last_id": None})


@gateway_view
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponseBase:
    """The list's entry for one model (by its name or an alias, as requests name it): what both
    SDKs' `models.retrieve` read."""
    try:
        listed = await sync_to_async(_model_list)(request)
    except GatewayError as error:
        return error_response(_flavour(request), error)
    wanted = model_id.lower()
    for entry in listed:
        if wanted in (name.lower() for name in [entry["id"], *entry["aliases"]]):
            return JsonResponse(entry)
    missing = GatewayError(404, f"No model '{model_id}' that this key may use (GET /v1/models lists them).")
    return error_response(_flavour(request), missing)


@gateway_view
async def not_found(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    """Authenticated first, as every /v1/ view: a caller without a key learns nothing of the paths."""
    try:
        await sync_to_async(caller_identify)(request)
    except GatewayError as refused:
        return error_response(_flavour(request), refused)
    missing = GatewayError(404, f"No such endpoint: {request.method} {request.path}.")
    return error_response(_flavour(request), missing)


def _capabilities(profile: ServerProfile) -> list[str]:
    """What a client may ask of the model (gateway.kinds.capabilities); tool calls where the model's
    chat template renders tools (a model on another node: only what every model of its kind does)."""
    folder = local_model_path(profile.model)
    return capabilities(profile, tools=folder is not None and takes_tools(folder))


def _model_list(request: HttpRequest) -> list[dict[str, Any]]:
    caller: Caller = caller_identify(request)
    if request.method != "GET":
        raise GatewayError(405, "Use GET.", headers={"Allow": "GET"})
    listed = []
    unknown = {status.node.pk for status in node_statuses() if status.states_unknown}  # as the dashboard
    for profile in usable_profiles(caller):
        server = getattr(profile, "server", None)
        created = profile.created_at
        state = "unknown" if profile.node_id in unknown else server.state if server else "stopped"
        listed.append(
            {
                "id": profile.name,
                "object": "model",
                "type": "model",
                "created": int(created.timestamp()),
                "created_at": created.isoformat().replace("+00:00", "Z"),
                "display_name": profile.name,
                "owned_by": "mlx-manager",
                "aliases": profile.alias_list,
                "state": state,
                "node": profile.node.name,
                "kind": profile.kind,
                "capabilities": _capabilities(profile),
            }
        )
    return listed
