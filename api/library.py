"""Models: Hub search, what is on this machine, downloads (queued for the supervisor, as the
Models page does), delete and the profile form's model check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api.auth import user_of
from api.errors import ERROR_CODES, ApiError, Error, form_error, not_found
from library.forms import SearchForm
from library.hub import HubError, fits_in_memory, hub_search
from library.local import is_valid_repo_id, local_models, weights_bytes
from library.models import Download
from library.selectors import profile_folders
from library.services import LibraryError, download_cancel, download_queue, model_delete
from profiles.modelinfo import check_model
from profiles.services import user_may_use_unsafe_options
from system.info import downloads_in_flight

router = Router(tags=["models"])


class HubModelOut(Schema):
    repo_id: str
    downloads: int | None
    likes: int | None
    last_modified: datetime | None
    parameters: int | None
    quantization: str | None
    size: int | None
    fits: bool
    downloaded: bool


class SearchQuery(Schema):
    q: str = ""
    author: str = "mlx-community"
    sort: str = "downloads"
    max_size: int | None = None


class FactsOut(Schema):
    family: str | None
    context_length: int | None
    quantization: str | None


class LocalModelOut(Schema):
    name: str
    path: str
    size: int
    revisions: int
    in_cache: bool
    facts: FactsOut


class DownloadIn(Schema):
    repo_id: str
    revision: str = Field(
        "main",
        max_length=100,  # Download.revision's column (PostgreSQL refuses a longer one with a 500)
        pattern=r"^[A-Za-z0-9._/-]*$",
        description="A branch, tag or commit sha on the Hub (letters, digits, `._-/`); blank: main.",
    )


class DownloadOut(Schema):
    id: int
    repo_id: str
    revision: str
    state: str
    bytes_done: int
    bytes_total: int | None
    speed_bps: float | None
    error: str
    cancel_requested: bool
    created_at: datetime
    finished_at: datetime | None


class DeleteIn(Schema):
    repo_id: str


class DeletedOut(Schema):
    repo_id: str
    freed_bytes: int


class CheckOut(Schema):
    model: str
    problem: str | None
    on_this_machine: bool
    family: str | None
    context_length: int | None
    quantization: str | None
    size: int | None
    fits: bool | None
    suggestions: dict[str, Any]
    hub_error: str | None


@router.get("/search", response={200: list[HubModelOut], ERROR_CODES: Error, 502: Error}, summary="Search the Hub")
def model_search(request: HttpRequest, query: Query[SearchQuery]) -> Any:
    """The Models page's search: `author` "any" for everyone; `max_size` in bytes (2, 4, … 128 GB).
    502 when the Hub cannot be reached."""
    form = SearchForm({key: "" if value is None else value for key, value in query.dict().items()})
    if not form.is_valid():
        raise form_error(form)
    data = form.cleaned_data
    try:
        found = hub_search(
            query=data["q"], author=data["author"], sort=data["sort"] or "downloads", max_size=data["max_size"]
        )
    except HubError as exc:
        raise ApiError(502, str(exc)) from None
    return [{**vars(model), "fits": fits_in_memory(model.size)} for model in found]


@router.get("/local", response={200: list[LocalModelOut], ERROR_CODES: Error}, summary="Models on this machine")
def model_local(request: HttpRequest) -> Any:
    found = local_models(also=profile_folders())  # as the Models page: the folders profiles serve too
    return [{**vars(model), "path": str(model.path), "facts": vars(model.facts)} for model in found]


@router.get("/downloads", response={200: list[DownloadOut], ERROR_CODES: Error}, summary="Downloads in flight")
def download_list(request: HttpRequest) -> Any:
    return downloads_in_flight()


@router.get("/downloads/{int:download_id}", response={200: DownloadOut, ERROR_CODES: Error}, summary="A download")
def download_get(request: HttpRequest, download_id: int) -> Any:
    download = Download.objects.filter(pk=download_id).first()
    if download is None:
        raise not_found("download")
    return download


@router.post("/downloads", response={202: DownloadOut, ERROR_CODES: Error}, summary="Start a download")
def download_start(request: HttpRequest, body: DownloadIn) -> Any:
    """Queue a download for the supervisor (or join the one already under way for the repo)."""
    try:
        return Status(202, download_queue(repo_id=body.repo_id, revision=body.revision or "main", by=user_of(request)))
    except LibraryError as exc:
        raise ApiError(400, str(exc), field="repo_id") from None


@router.post("/downloads/{int:download_id}/cancel", response={200: DownloadOut, ERROR_CODES: Error}, summary="Cancel")
def download_cancel_view(request: HttpRequest, download_id: int) -> Any:
    download = download_get(request, download_id)
    if not download_cancel(download=download, by=user_of(request)):
        raise ApiError(409, f"{download.repo_id}: the download has already ended.")
    download.refresh_from_db()
    return download


@router.post("/delete", response={200: DeletedOut, ERROR_CODES: Error}, summary="Delete a cached model")
def model_delete_view(request: HttpRequest, body: DeleteIn) -> Any:
    try:
        freed = model_delete(repo_id=body.repo_id, by=user_of(request))
    except LibraryError as exc:
        raise ApiError(409 if is_valid_repo_id(body.repo_id) else 400, str(exc), field="repo_id") from None
    return {"repo_id": body.repo_id, "freed_bytes": freed}


@router.get("/check", response={200: CheckOut, ERROR_CODES: Error}, summary="Check a model")
def model_check(request: HttpRequest, model: str) -> Any:
    """What the profile form says of a model (repo id or folder): its family, context length,
    quantization, size, whether it fits in memory, and the settings that suit it."""
    if not model.strip() or len(model) > 500:
        raise ApiError(400, "Enter a model: a Hugging Face repo id or an absolute path.", field="model")
    check = check_model(model, any_path=user_may_use_unsafe_options(user=user_of(request)))
    facts = check.facts
    size = weights_bytes(check.folder) if check.folder is not None else None
    return {
        "model": check.model,
        "problem": check.problem,
        "on_this_machine": check.on_this_machine,
        "family": facts.family if facts else None,
        "context_length": facts.context_length if facts else None,
        "quantization": facts.quantization if facts else None,
        "size": size,
        "fits": fits_in_memory(size) if size is not None else None,
        "suggestions": check.suggestions,
        "hub_error": check.hub_error,
    }
