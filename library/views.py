"""The model library's pages: local models, Hub search, a Hub model's page, downloads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from accounts.types import AuthedRequest
from core.memory import for_models
from library.folders import ModelFolderForm, model_folder_add, model_folder_remove
from library.forms import DownloadForm, SearchForm
from library.hub import HubError, HubModel, hub_search
from library.hub import hub_model as fetch_hub_model
from library.kinds import engine_for
from library.local import is_valid_repo_id, local_model_path, model_facts
from library.local import local_models as list_local_models
from library.models import Download, DownloadState, ModelFolder
from library.selectors import model_uses, profile_folders
from library.services import (
    ACTIVE,
    LibraryError,
    ModelDeleteRefused,
    download_cancel,
    download_dismiss,
    download_queue,
    download_retry,
    model_delete,
)
from nodes.models import Node
from nodes.selectors import this_node_id

RECENT_SHOWN = 5
DONE_SHOWN_FOR = timedelta(minutes=10)  # a finished download's line, then the model's row says it all


class DownloadsQuery(forms.Form):
    was_active = forms.BooleanField(required=False)

    def is_valid_and_was_active(self) -> bool:
        return self.is_valid() and bool(self.cleaned_data["was_active"])


def _downloads_context() -> dict[str, Any]:
    """Running downloads, failed ones until dismissed or retried, others for a few minutes."""
    active = list(Download.objects.filter(state__in=ACTIVE).select_related("node").order_by("created_at"))
    recent = list(
        Download.objects.exclude(state__in=ACTIVE)
        .filter(Q(state=DownloadState.FAILED) | Q(finished_at__gte=timezone.now() - DONE_SHOWN_FOR))
        .order_by("-finished_at", "-created_at")[:RECENT_SHOWN]
    )
    return {"active_downloads": active, "recent_downloads": recent, "several_nodes": Node.objects.count() > 1}


def _local_context(folder_form: ModelFolderForm | None = None) -> dict[str, Any]:
    models = list_local_models(also=profile_folders())
    uses = model_uses([m.name for m in models])
    rows = [
        {"model": m, "profiles": uses[m.name].profiles, "in_use": bool(m.in_cache and uses[m.name].busy_servers)}
        for m in models
    ]
    return {
        "rows": rows,
        "other_nodes": _other_nodes(),
        "this_node_name": settings.MLXM_NODE_NAME,
        "env_folders": [str(root) for root in settings.MLXM_MODEL_DIRS],
        "added_folders": ModelFolder.objects.filter(node_id=this_node_id()),
        "folder_form": folder_form or ModelFolderForm(),
        "hf_cache": settings.HF_HUB_CACHE,
        **_downloads_context(),
    }


def _other_nodes() -> list[dict[str, Any]]:
    """The other nodes' models, as their supervisors last listed them (their disks are not ours)."""
    now = timezone.now()
    return [
        {
            "node": node,
            "online": node.is_online(now),
            "models": sorted(node.local_models, key=lambda m: str(m.get("repo_id")).lower()),
        }
        for node in Node.objects.exclude(name=settings.MLXM_NODE_NAME).order_by("name")
    ]


@require_GET
def local_models(request: AuthedRequest) -> HttpResponse:
    return render(request, "library/local.html", _local_context())


@require_GET
def downloads(request: AuthedRequest) -> HttpResponse:
    """The live part of the downloads list (polled by htmx); reads only the database."""
    context = _downloads_context()
    response = render(request, "library/_downloads.html", context)
    if DownloadsQuery(request.GET).is_valid_and_was_active() and not context["active_downloads"]:
        response["HX-Refresh"] = "true"  # a download ended: show the updated local list
    return response


@require_GET
def search(request: AuthedRequest) -> HttpResponse:
    data = request.GET.copy()
    data.setdefault("author", "mlx-community")  # the default filter; "any" (or blank) widens it
    data.setdefault("sort", "downloads")
    form = SearchForm(data if request.GET else None, initial={"author": "mlx-community", "sort": "downloads"})
    results: list[HubModel] = []
    error = ""
    searched = False
    if request.GET and form.is_valid():
        cleaned = form.cleaned_data
        searched = True
        try:
            results = hub_search(
                query=cleaned["q"],
                author=cleaned["author"],
                sort=cleaned["sort"] or "downloads",
                max_size=cleaned["max_size"],
            )
        except HubError as problem:
            error = str(problem)
    context = {
        "form": form,
        "results": results,
        "error": error,
        "searched": searched,
        "for_models": for_models(),
        "active_repos": set(Download.objects.filter(state__in=ACTIVE).values_list("repo_id", flat=True)),
    }
    template = "library/_results.html" if request.htmx else "library/search.html"
    return render(request, template, context)


@require_GET
def hub_model(request: AuthedRequest, repo_id: str) -> HttpResponse:
    if not is_valid_repo_id(repo_id):
        return render(request, "library/hub_model.html", {"repo_id": repo_id, "error": "Not a repo id."}, status=404)
    context: dict[str, Any] = {
        "repo_id": repo_id,
        "profiles": model_uses([repo_id])[repo_id].profiles,
        "local_path": local_model_path(repo_id),
        "new_profile_url": f"{reverse('profiles:new')}?{urlencode({'model': repo_id})}",
        "for_models": for_models(),
    }
    try:
        page = fetch_hub_model(repo_id)
    except HubError as problem:
        context["error"] = str(problem)
        return render(request, "library/hub_model.html", context)
    context.update(page=page, model=page.model, facts=model_facts(page.config))
    kind = page.model.kind  # "Create a profile" picks its engine and kind
    query = {"model": repo_id, "kind": kind, "engine": engine_for(kind)}
    context["new_profile_url"] = f"{reverse('profiles:new')}?{urlencode(query)}"
    return render(request, "library/hub_model.html", context)


@require_POST
def download(request: AuthedRequest) -> HttpResponse:
    asked = DownloadForm(request.POST)
    try:
        if not asked.is_valid():
            raise LibraryError(" ".join(str(error) for errors in asked.errors.values() for error in errors))
        data = asked.cleaned_data
        queued = download_queue(repo_id=data["repo_id"], by=request.user, node=data["node"])
    except LibraryError as problem:
        if request.htmx:
            return HttpResponse(format_html('<span class="field-error">{}</span>', problem), status=400)
        form = SearchForm(initial={"author": "mlx-community", "sort": "downloads"})
        context = {"form": form, "error": str(problem), "results": [], "for_models": for_models()}
        return render(request, "library/search.html", context, status=400)
    if request.htmx:
        return render(request, "library/_queued.html", {"download": queued})
    messages.success(request, f"{queued.repo_id}: download queued.")
    return redirect(f"{reverse('library:local')}#downloads")


@require_POST
def cancel(request: AuthedRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Download, pk=pk)
    if download_cancel(download=item, by=request.user):
        messages.info(request, f"{item.repo_id}: cancelling; partial files will be removed.")
    if request.htmx:
        return render(request, "library/_downloads.html", _downloads_context())
    return redirect(f"{reverse('library:local')}#downloads")


@require_POST
def dismiss(request: AuthedRequest, pk: int) -> HttpResponse:
    download_dismiss(download=get_object_or_404(Download, pk=pk), by=request.user)
    if request.htmx:
        return render(request, "library/_downloads.html", _downloads_context())
    return redirect(f"{reverse('library:local')}#downloads")


@require_POST
def retry(request: AuthedRequest, pk: int) -> HttpResponse:
    try:
        queued = download_retry(download=get_object_or_404(Download, pk=pk), by=request.user)
        messages.success(request, f"{queued.repo_id}: download queued again.")
    except LibraryError as problem:
        messages.warning(request, str(problem))
    if request.htmx:
        return render(request, "library/_downloads.html", _downloads_context())
    return redirect(f"{reverse('library:local')}#downloads")


@require_POST
def delete(request: AuthedRequest) -> HttpResponse:
    repo_id = request.POST.get("repo_id", "")
    try:
        freed = model_delete(repo_id=repo_id, by=request.user)
    except ModelDeleteRefused as refusal:
        return render(request, "library/local.html", {**_local_context(), "delete_error": str(refusal)}, status=403)
    except LibraryError as problem:
        context = {**_local_context(), "delete_error": str(problem)}
        status = 409 if is_valid_repo_id(repo_id) else 400
        return render(request, "library/local.html", context, status=status)
    from django.template.defaultfilters import filesizeformat

    messages.success(request, f"Deleted {repo_id} ({filesizeformat(freed)} freed).")
    return redirect("library:local")


@require_POST
def folder_add(request: AuthedRequest) -> HttpResponse:
    """An administrator allows a model folder: back to the page, or the page with the form's error."""
    if not request.user.is_admin:
        raise PermissionDenied
    form = ModelFolderForm(request.POST)
    if not form.is_valid():
        return render(request, "library/local.html", _local_context(folder_form=form), status=400)
    model_folder_add(path=form.cleaned_data["path"], by=request.user)
    messages.success(request, f"Profiles may now serve models from {form.cleaned_data['path']}.")
    return redirect(f"{reverse('library:local')}#model-folders")


@require_POST
def folder_remove(request: AuthedRequest, pk: int) -> HttpResponse:
    if not request.user.is_admin:
        raise PermissionDenied
    folder = get_object_or_404(ModelFolder, pk=pk, node_id=this_node_id())
    model_folder_remove(folder=folder, by=request.user)
    messages.info(request, f"{folder.path} is no longer an allowed model folder.")
    return redirect(f"{reverse('library:local')}#model-folders")
