"""Profile pages: list, detail, create, edit, duplicate, delete, and the form's htmx checks."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.types import AuthedRequest
from core.web import gateway_base_url
from library.local import cached_repo_ids
from nodes.models import Node
from profiles import services
from profiles.argv import OPTIONS, VLM_OPTIONS, command_line
from profiles.forms import AUTO_START_SHOWN, ENGINE_ONLY, ProfileForm, name_from_model
from profiles.modelinfo import apply_suggestions, check_model, default_start_timeout, format_suggestion
from profiles.models import ENGINE_KINDS, Engine, Kind, ServerProfile
from profiles.ports import TYPING_SCAN_SECONDS, NoFreePort, next_free_port, port_status
from profiles.selectors import server_status, server_statuses


@require_GET
def profile_list(request: AuthedRequest) -> HttpResponse:
    profiles = list(ServerProfile.objects.all())
    statuses = server_statuses(profiles)
    rows = [{"profile": profile, "state": statuses[profile.pk].state} for profile in profiles]
    return render(request, "profiles/list.html", {"rows": rows})


PAGE_HEAD = {"name", "description"}


@require_GET
def profile_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    profile = get_object_or_404(ServerProfile.objects.select_related("created_by"), pk=pk)
    status = server_status(profile)
    form = ProfileForm(instance=profile)
    # The name heads the page and the description is a paragraph under it: the rest, as set.
    # ...of its engine only: the other engine's options do not reach its server.
    hidden = ENGINE_ONLY[Engine.MLX_VLM if profile.engine == Engine.MLX_LM else Engine.MLX_LM]
    settings_rows = [
        (form[name].label, *_display(profile, name)) for name in form.fields if name not in PAGE_HEAD | hidden
    ]
    return render(
        request,
        "profiles/detail.html",
        {
            "profile": profile,
            "state": status.state,
            "can_delete": status.deletable,
            "can_manage": services.profile_can_manage(user=request.user, profile=profile),
            "command": command_line(profile),
            "settings_rows": settings_rows,
            "gateway_url": gateway_base_url(request),
        },
    )


REMOTE_CODE_WARNING = (
    "Trust remote code is on: starting this server runs Python code from the model's repo as the user "
    "running MLX Manager, with access to its database and secrets."
)

SERVER_DEFAULTS = {option.field: option.default for option in OPTIONS}
VLM_DEFAULTS = {option.field: option.default for option in VLM_OPTIONS}


def _display(profile: ServerProfile, name: str) -> tuple[str, bool]:
    """A setting as shown on the profile page, and whether it is the server's default."""
    value = getattr(profile, name)
    if name == "auto_start":
        return AUTO_START_SHOWN[bool(value)], not value
    if isinstance(value, bool):
        return ("Yes" if value else "No"), not value
    if value in (None, "", {}):
        if name == "start_timeout":
            seconds = default_start_timeout(profile.model, base=settings.MLXM_START_TIMEOUT)
            return f"by the model's size ({seconds} s)", True
        defaults = VLM_DEFAULTS if profile.engine == Engine.MLX_VLM else SERVER_DEFAULTS
        if name not in defaults:
            return "—", True
        default = defaults[name]
        if name == "allowed_origins":
            return "any origin (*)", True
        return ("server default" if default in (None, "") else f"server default ({default})"), True
    if name == "chat_template_args":
        return format_suggestion(value), False
    return str(value), False


def _form_page(request: AuthedRequest, form: ProfileForm, profile: ServerProfile | None) -> HttpResponse:
    model = str(form["model"].value() or "")
    port = str(form["port"].value() or "")
    context = {
        "form": form,
        "profile": profile,
        "cached_models": cached_repo_ids(),
        # The field's own error says what is wrong with the model: not said a second time below it.
        "check": check_model(model, any_path=form.any_path) if model.strip() and not form.errors.get("model") else None,
        "port_status": port_status(port, exclude=profile) if port.strip() and not form.errors.get("port") else None,
        "running": profile is not None and not server_status(profile).stopped,
    }
    return render(request, "profiles/form.html", context)


def _edit(request: AuthedRequest, profile: ServerProfile | None) -> HttpResponse:
    if request.method == "POST" and "apply_suggestions" in request.POST:
        data = {key: request.POST.get(key, "") for key in request.POST}
        any_path = services.user_may_use_unsafe_options(user=request.user)
        suggested = apply_suggestions(data, check_model(data.get("model", ""), any_path=any_path).suggestions)
        initial: dict[str, Any] = dict(suggested)
        for name, field in ProfileForm.base_fields.items():
            if isinstance(field, forms.BooleanField):
                initial[name] = name in request.POST
        form = ProfileForm(instance=profile, initial=initial, user=request.user)
        return _form_page(request, form, profile)
    if request.method == "POST":
        # The form writes typed values onto its instance; keep `profile` as saved for the page's heading.
        form = ProfileForm(
            request.POST,
            instance=ServerProfile.objects.get(pk=profile.pk) if profile else None,
            user=request.user,
        )
        if form.is_valid():
            fields = {name: form.cleaned_data[name] for name in form.fields}
            try:
                if profile is None:
                    saved = services.profile_create(fields=fields, by=request.user)
                    messages.success(request, f"Profile “{saved.name}” created.")
                else:
                    saved = services.profile_update(profile=form.instance, fields=fields, by=request.user)
                    note = "" if server_status(saved).stopped else " Restart its server to use them."
                    messages.success(request, f"Changes to “{saved.name}” saved.{note}")
                if saved.trust_remote_code:
                    messages.warning(request, REMOTE_CODE_WARNING)
            except services.ProfileConflict as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("profiles:detail", pk=saved.pk)
        return _form_page(request, form, profile)
    return _form_page(
        request,
        ProfileForm(instance=profile, initial=_new_initial(request) if not profile else {}, user=request.user),
        profile,
    )


def _new_initial(request: AuthedRequest) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    query = ModelCheckQuery(request.GET)
    if query.is_valid() and (model := query.cleaned_data["model"].strip()):
        initial["model"] = model
        initial["name"] = name_from_model(model)
    kind, engine = request.GET.get("kind", ""), request.GET.get("engine", "")
    if kind in Kind.values and engine in Engine.values and kind in ENGINE_KINDS[Engine(engine)]:  # from the library
        initial["kind"], initial["engine"] = kind, engine
    node = request.GET.get("node", "")
    if Node.objects.filter(name=node).exists():  # "New profile" from another node's model list
        initial["node"] = node
    try:
        initial["port"] = next_free_port()
    except NoFreePort as exc:
        messages.warning(request, str(exc))
    return initial


def profile_new(request: AuthedRequest) -> HttpResponse:
    return _edit(request, None)


def profile_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    profile = get_object_or_404(ServerProfile, pk=pk)
    if not services.profile_can_manage(user=request.user, profile=profile):
        raise PermissionDenied(f"Only the owner of “{profile.name}” or an administrator can change it.")
    return _edit(request, profile)


@require_POST
def profile_duplicate(request: AuthedRequest, pk: int) -> HttpResponse:
    profile = get_object_or_404(ServerProfile, pk=pk)
    try:
        copy = services.profile_duplicate(profile=profile, by=request.user)
    except (NoFreePort, services.ProfileConflict) as exc:
        messages.error(request, str(exc))
        return redirect("profiles:detail", pk=profile.pk)
    messages.success(request, f"Copied “{profile.name}” to “{copy.name}” on port {copy.port}.")
    return redirect("profiles:detail", pk=copy.pk)


@require_POST
def profile_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    profile = get_object_or_404(ServerProfile, pk=pk)
    try:
        services.profile_delete(profile=profile, by=request.user)
    except services.ProfileDeleteRefused as exc:
        messages.error(request, str(exc))
        return redirect("profiles:detail", pk=pk)
    messages.success(request, f"Profile “{profile.name}” deleted.")
    return redirect("profiles:list")


class PortCheckQuery(forms.Form):
    port = forms.CharField(required=False)  # port_status explains a bad port itself
    profile = forms.IntegerField(required=False, min_value=1)


class ModelCheckQuery(forms.Form):
    model = forms.CharField(required=False, max_length=500)


@require_GET
def check_port(request: AuthedRequest) -> HttpResponse:
    """htmx, as the port is typed: free, taken by a profile (error) or by a foreign process (warning)."""
    query = PortCheckQuery(request.GET)
    if "port" in query.errors:  # a null character: not a number, said beside the field like any typo
        return render(request, "profiles/_port_status.html", {"port_status": port_status("")})
    if not query.is_valid():
        return HttpResponseBadRequest("Bad query: " + "; ".join(f"{k}: {v[0]}" for k, v in query.errors.items()))
    pk = query.cleaned_data["profile"]
    exclude = ServerProfile.objects.filter(pk=pk).first() if pk else None
    status = port_status(query.cleaned_data["port"], exclude=exclude, max_age=TYPING_SCAN_SECONDS)
    return render(request, "profiles/_port_status.html", {"port_status": status})


@require_GET
def check_model_view(request: AuthedRequest) -> HttpResponse:
    """htmx, as the model is typed: a problem with it, or its facts and the settings that fit it. A
    member hears one "not an allowed location" for every path outside the allowed roots."""
    query = ModelCheckQuery(request.GET)
    if not query.is_valid():  # too long, or a null character: said beside the field like any problem
        return render(request, "profiles/_model_check.html", {"check": {"problem": query.errors["model"][0]}})
    model = query.cleaned_data["model"]
    any_path = services.user_may_use_unsafe_options(user=request.user)
    check = check_model(model, any_path=any_path) if model.strip() else None
    return render(request, "profiles/_model_check.html", {"check": check})
