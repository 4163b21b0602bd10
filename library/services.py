"""Writes and side effects of the model library. The web side only queues and cancels downloads
(the supervisor runs them) and deletes cached models through huggingface_hub's own strategy."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from accounts.models import User
from accounts.permissions import may_act
from audit.models import AuditKind
from audit.services import audit_record
from core.wakeup import wake_supervisor
from library.local import is_valid_repo_id
from library.models import Download, DownloadState
from library.selectors import model_uses
from nodes.models import Node
from nodes.selectors import this_node

ACTIVE = (DownloadState.QUEUED, DownloadState.DOWNLOADING)


class LibraryError(Exception):
    """A refused request; the message is for the page."""


@transaction.atomic  # SQLite transactions are IMMEDIATE: two requests for one repo serialize here
def download_queue(*, repo_id: str, revision: str = "main", by: User | None, node: Node | None = None) -> Download:
    """Queue a download for `node` (default this one), or join the one already queued or running
    there for the same repo. Only that node's supervisor runs it, into that node's cache."""
    node = node or this_node()
    repo_id = repo_id.strip()
    if not is_valid_repo_id(repo_id):
        raise LibraryError(f"{repo_id!r} is not a Hugging Face repo id (like mlx-community/Qwen3-4B-4bit).")
    existing = (
        Download.objects.filter(repo_id=repo_id, revision=revision, node=node, state__in=ACTIVE, cancel_requested=False)
        .order_by("created_at")
        .first()
    )
    if existing is not None:
        return existing
    download = Download.objects.create(repo_id=repo_id, revision=revision, requested_by=by, node=node)
    message = f"revision {revision} on {node.name}"
    audit_record(kind=AuditKind.DOWNLOAD, action="download", subject=repo_id, by=by, message=message)
    transaction.on_commit(lambda: wake_supervisor(node=node.name))
    return download


class DownloadChangeRefused(PermissionDenied):
    """The person may not cancel, retry or dismiss this download (a 403 when it reaches a view)."""


def download_can_change(*, user: User, download: Download) -> bool:
    """Whether `user` may cancel, retry or dismiss `download`: who asked for it, an administrator,
    or whoever may delete any model (a member must not stop or erase another's download record,
    which is also what lets its requester delete the model later)."""
    return may_act(user, perm="library.delete_any_model", owner_id=download.requested_by_id)


def _require_change(download: Download, by: User | None, verb: str) -> None:
    if by is not None and not download_can_change(user=by, download=download):
        raise DownloadChangeRefused(
            f"Only the person who asked for {download.repo_id} or an administrator can {verb} its download."
        )


def download_cancel(*, download: Download, by: User | None) -> bool:
    """Ask the runner to stop and remove the partial files; False when it had already ended."""
    _require_change(download, by, "cancel")
    changed = Download.objects.filter(pk=download.pk, state__in=ACTIVE).update(cancel_requested=True)
    if changed:
        audit_record(kind=AuditKind.DOWNLOAD, action="cancel", subject=download.repo_id, by=by)
        wake_supervisor(node=download.node.name)
    return bool(changed)


FINISHED = (DownloadState.COMPLETED, DownloadState.FAILED, DownloadState.CANCELLED)


def download_dismiss(*, download: Download, by: User | None) -> bool:
    """Take a finished download off the list (its record goes; the model, if any, stays)."""
    _require_change(download, by, "dismiss")
    deleted, _ = Download.objects.filter(pk=download.pk, state__in=FINISHED).delete()
    if deleted:
        audit_record(kind=AuditKind.DOWNLOAD, action="dismiss", subject=download.repo_id, by=by)
    return bool(deleted)


@transaction.atomic
def download_retry(*, download: Download, by: User | None) -> Download:
    """Queue a failed or cancelled download again (it resumes from its partial files) and drop the old record."""
    _require_change(download, by, "retry")
    if download.state not in (DownloadState.FAILED, DownloadState.CANCELLED):
        raise LibraryError(f"{download.repo_id}: only a failed or cancelled download can be tried again.")
    queued = download_queue(repo_id=download.repo_id, revision=download.revision, by=by, node=download.node)
    download_dismiss(download=download, by=by)
    return queued


class ModelDeleteRefused(PermissionDenied):
    """The person may not delete this model (a 403 when it reaches a view)."""


def model_delete_refusal(*, user: User, repo_id: str) -> str | None:
    """Why `user` may not delete `repo_id`, or None. A member may delete a model only they
    downloaded that no one else's profile uses; administrators and "delete any model" may delete any.
    (Downloading a model someone else has, which completes at once, gives no right to delete theirs.)"""
    if user.is_admin or user.has_perm("library.delete_any_model"):
        return None
    downloaders = set(
        Download.objects.filter(repo_id=repo_id, state=DownloadState.COMPLETED).values_list("requested_by", flat=True)
    )
    if user.pk not in downloaders:
        return f"Only the person who downloaded {repo_id} or an administrator can delete it."
    if downloaders != {user.pk}:
        return f"Other people downloaded {repo_id} too; only an administrator can delete it."
    use = model_uses([repo_id])[repo_id]
    if others := [name for name, owner in use.owners.items() if owner != user.pk]:
        return (
            f"{repo_id} is used by other people's profiles ({', '.join(others)}); only an administrator can delete it."
        )
    return None


def model_delete(*, repo_id: str, by: User | None, cache_dir: Path | None = None) -> int:
    """Delete every cached revision of `repo_id` with the cache's own delete strategy; returns
    the bytes freed. Refused for anything that is not a repo id in the cache, and while a running
    server or a download uses it."""
    if not is_valid_repo_id(repo_id):
        raise LibraryError("Only a Hugging Face repo id in the cache can be deleted here.")
    if by is not None and (refusal := model_delete_refusal(user=by, repo_id=repo_id)):
        raise ModelDeleteRefused(refusal)
    in_use = model_uses([repo_id])[repo_id].busy_servers
    if in_use:
        names = ", ".join(in_use)
        raise LibraryError(f"{repo_id} is in use by a running server ({names}); stop it first.")
    if Download.objects.filter(repo_id=repo_id, state__in=ACTIVE).exists():
        raise LibraryError(f"{repo_id} is being downloaded; cancel the download first.")
    try:
        info = scan_cache_dir(cache_dir or settings.HF_HUB_CACHE)
    except CacheNotFound:
        info = None
    repo = next((r for r in (info.repos if info else ()) if r.repo_type == "model" and r.repo_id == repo_id), None)
    if info is None or repo is None:
        raise LibraryError(f"{repo_id} is not in the model cache.")
    strategy = info.delete_revisions(*(revision.commit_hash for revision in repo.revisions))
    strategy.execute()
    audit_record(
        kind=AuditKind.MODEL,
        action="delete",
        subject=repo_id,
        by=by,
        message=f"{strategy.expected_freed_size} bytes freed",
    )
    return int(strategy.expected_freed_size)
