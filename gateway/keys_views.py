"""The API keys page (`/accounts/keys/`): a person's keys, a form for a new one (its secret shown
once, after the redirect), revoke. Administrators also see and revoke everyone's keys. And a
dashboard card's "Use it" panel: how to reach a profile's model with a key."""

from __future__ import annotations

import json
import shlex

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from accounts.limits import person_limits
from accounts.types import AuthedRequest
from core.web import GATEWAY_PATH, gateway_base_url
from gateway.forms import KeyForm, UserQuery
from gateway.limits.standing import standings_of
from gateway.models import ApiKey
from gateway.services import KeyPermissionError, key_create, key_revoke
from profiles.models import ServerProfile

NEW_SECRET_SESSION_KEY = "gateway_new_api_key"


def _keys(queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    return queryset.select_related("user").prefetch_related("profiles").order_by("revoked_at", "-created_at")


def _page(request: AuthedRequest, form: KeyForm, status: int = 200) -> HttpResponse:
    others = None
    if request.user.is_admin:
        others = _keys(ApiKey.objects.exclude(user=request.user))
        query = UserQuery(request.GET)
        query.is_valid()  # a bad `user` is left out of cleaned_data: no filter, never a 500
        if owner := query.cleaned_data.get("user"):
            others = others.filter(user_id=owner)
    context = {
        "section": "account",
        "form": form,
        "keys": _keys(request.user.api_keys.all()),
        "others": others,
        "new_secret": request.session.pop(NEW_SECRET_SESSION_KEY, None),
        "base_url": gateway_base_url(request),
        "own_standings": standings_of(request.user),
    }
    return render(request, "gateway/keys.html", context, status=status)


def key_list(request: AuthedRequest) -> HttpResponse:
    return _page(request, KeyForm(owner_limits=person_limits(request.user)))


@require_POST
def key_new(request: AuthedRequest) -> HttpResponse:
    form = KeyForm(request.POST, owner_limits=person_limits(request.user))
    if not form.is_valid():
        return _page(request, form, status=400)
    created = key_create(
        user=request.user,
        name=form.cleaned_data["name"],
        expires_at=form.cleaned_data["expires_at"],
        profiles=form.cleaned_data["profiles"],
        may_manage=form.cleaned_data["may_manage"],
        limits=form.limits(),
    )
    # Shown once, on the page after the redirect, then gone from the session.
    request.session[NEW_SECRET_SESSION_KEY] = {"name": created.key.name, "secret": created.secret}
    return redirect("keys:list")


@require_POST
def key_revoke_view(request: AuthedRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id)
    try:
        key_revoke(key=key, by=request.user)
    except KeyPermissionError:
        raise PermissionDenied from None
    messages.success(request, f"The key “{key.name}” is revoked; it no longer works.")
    return redirect("keys:list")


@require_GET
def use_it(request: AuthedRequest, profile_id: int) -> HttpResponse:
    """The snippets of a card's "Use it" panel (htmx loads them when the panel is first opened)."""
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    base_url = gateway_base_url(request)
    hello = {"model": profile.name, "messages": [{"role": "user", "content": "Hello"}]}
    context = {
        "model": profile.name,
        "model_literal": json.dumps(profile.name, ensure_ascii=False),  # a Python string literal too
        "curl_data": shlex.quote(json.dumps(hello, ensure_ascii=False)),  # any name, quotes and all
        "slug": slugify(profile.name),
        "origin": base_url.removesuffix(GATEWAY_PATH),
        "base_url": base_url,
    }
    return render(request, "gateway/_use_it.html", context)
