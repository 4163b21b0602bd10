"""Profiles: the same form validates the body and the same services write it, so the API refuses
exactly what the profile page refuses."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja import ModelSchema, Router, Schema, Status

from accounts.models import User
from api.auth import user_of
from api.errors import ERROR_CODES, ApiError, Error, form_error, not_found
from profiles import services
from profiles.forms import ProfileForm
from profiles.models import ServerProfile
from profiles.ports import NoFreePort, next_free_port
from profiles.selectors import server_status

router = Router(tags=["profiles"])


class ProfileOut(ModelSchema):
    state: str
    node: str  # the node's name, as ProfileIn takes it

    class Meta:
        model = ServerProfile
        fields = ["id", *(name for name in ProfileForm.Meta.fields if name != "node"), "created_at", "updated_at"]

    @staticmethod
    def resolve_state(profile: ServerProfile) -> str:
        return server_status(profile).state

    @staticmethod
    def resolve_node(profile: ServerProfile) -> str:
        return profile.node.name


class ProfileIn(Schema):
    """Any of the profile page's fields; leave one out to keep its current value (or, on create,
    the page's default; a new profile without a port gets the next free one). Values are checked
    by the profile form: the limits and messages are the page's."""

    name: str | None = None
    aliases: str | None = None
    description: str | None = None
    node: str | None = None  # a node's name; on create, leaving it out means the node that answers
    model: str | None = None
    host: str | None = None
    port: int | None = None
    auto_start: bool | None = None
    adapter_path: str | None = None
    draft_model: str | None = None
    num_draft_tokens: int | None = None
    trust_remote_code: bool | None = None
    log_level: str | None = None
    chat_template: str | None = None
    use_default_chat_template: bool | None = None
    chat_template_args: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    decode_concurrency: int | None = None
    prompt_concurrency: int | None = None
    prefill_step_size: int | None = None
    prompt_cache_size: int | None = None
    prompt_cache_bytes: int | str | None = None
    kv_bits: int | None = None
    kv_group_size: int | None = None
    quantized_kv_start: int | None = None
    allowed_origins: str | None = None


class PortOut(Schema):
    port: int


def get_profile(pk: int) -> ServerProfile:
    profile = ServerProfile.objects.select_related("server").filter(pk=pk).first()
    if profile is None:
        raise not_found("profile")
    return profile


def _form_data(body: ProfileIn, profile: ServerProfile | None) -> dict[str, Any]:
    """The form's data: the profile's current values (or the new-profile defaults) under the body's."""
    current = ProfileForm(instance=profile).initial if profile else {}
    data: dict[str, Any] = {name: current.get(name) for name in ProfileForm.Meta.fields}
    if profile is None:
        data.update(host="127.0.0.1", log_level="INFO")
    given = body.dict(exclude_unset=True)
    if "chat_template_args" in given:
        given["chat_template_args"] = json.dumps(given["chat_template_args"]) if given["chat_template_args"] else ""
    data.update(given)
    if profile is None and data.get("port") is None:
        try:
            data["port"] = next_free_port()
        except NoFreePort as exc:
            raise ApiError(409, str(exc), field="port") from None
    return {name: value for name, value in data.items() if value is not None}


def validated_fields(body: ProfileIn, profile: ServerProfile | None, *, by: User) -> dict[str, Any]:
    """The form's cleaned values. Unsafe options are refused (403) before the form looks at the
    disk, so a member hears one answer for every path outside the allowed folders."""
    data = _form_data(body, profile)
    services.profile_refuse_unsafe(fields=data, by=by)
    form = ProfileForm(data, instance=profile, user=by)
    if not form.is_valid():
        raise form_error(form)
    return {name: form.cleaned_data[name] for name in form.fields}


def _conflict(exc: Exception) -> ApiError:
    return ApiError(409, str(exc))


@router.get("/", response={200: list[ProfileOut], ERROR_CODES: Error}, summary="List profiles")
def profile_list(request: HttpRequest) -> Any:
    return list(ServerProfile.objects.select_related("server"))


@router.get("/next-free-port", response={200: PortOut, ERROR_CODES: Error}, summary="The next free port")
def profile_next_port(request: HttpRequest) -> Any:
    try:
        return {"port": next_free_port()}
    except NoFreePort as exc:
        raise ApiError(409, str(exc), field="port") from None


@router.get("/{int:profile_id}", response={200: ProfileOut, ERROR_CODES: Error}, summary="Get a profile")
def profile_get(request: HttpRequest, profile_id: int) -> Any:
    return get_profile(profile_id)


@router.post("/", response={201: ProfileOut, ERROR_CODES: Error}, summary="Create a profile")
def profile_create(request: HttpRequest, body: ProfileIn) -> Any:
    fields = validated_fields(body, None, by=user_of(request))
    try:
        return Status(201, services.profile_create(fields=fields, by=user_of(request)))
    except services.ProfileConflict as exc:
        raise _conflict(exc) from None


@router.patch("/{int:profile_id}", response={200: ProfileOut, ERROR_CODES: Error}, summary="Change a profile")
def profile_update(request: HttpRequest, profile_id: int, body: ProfileIn) -> Any:
    profile = get_profile(profile_id)
    services.profile_require_manage(profile=profile, by=user_of(request), verb="change")  # before the body is judged
    fields = validated_fields(body, ServerProfile.objects.get(pk=profile.pk), by=user_of(request))
    try:
        return services.profile_update(profile=profile, fields=fields, by=user_of(request))
    except services.ProfileConflict as exc:
        raise _conflict(exc) from None


@router.post(
    "/{int:profile_id}/duplicate", response={201: ProfileOut, ERROR_CODES: Error}, summary="Duplicate a profile"
)
def profile_duplicate(request: HttpRequest, profile_id: int) -> Any:
    try:
        return Status(201, services.profile_duplicate(profile=get_profile(profile_id), by=user_of(request)))
    except (NoFreePort, services.ProfileConflict) as exc:
        raise _conflict(exc) from None


@router.delete("/{int:profile_id}", response={204: None, ERROR_CODES: Error}, summary="Delete a profile")
def profile_delete(request: HttpRequest, profile_id: int) -> Any:
    try:
        services.profile_delete(profile=get_profile(profile_id), by=user_of(request))
    except services.ProfileDeleteRefused as exc:
        raise _conflict(exc) from None
    return Status(204, None)
