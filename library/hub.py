"""Questions to the Hugging Face Hub, always through `huggingface_hub` (so HF_ENDPOINT, HF_TOKEN
and HF_HUB_OFFLINE work as users know them). Errors come back as `HubError` with a sentence a
person can act on; callers show it and carry on with what is local."""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx2
import huggingface_hub.constants as hf_constants
from django.conf import settings
from huggingface_hub import HfApi, get_session, hf_hub_url, hf_raise_for_status, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
from huggingface_hub.utils import build_hf_headers

from core.memory import for_models
from library.kinds import CHAT, model_kind
from library.local import cached_repo_ids

T = TypeVar("T")
SORTS = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}
SEARCH_LIMIT = 30
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub")
_size_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hub-sizes")
_sizes: dict[tuple[str, str], tuple[int, list[tuple[str, int]]]] = {}
_sizes_lock = threading.Lock()
SIZES_REMEMBERED = 2000  # repo revisions whose file sizes are kept; the oldest go first


class HubError(Exception):
    """The Hub could not answer; the message is meant for the page."""


def hub_timeout() -> float:
    return settings.MLXM_HUB_TIMEOUT


# The deadline of the Hub call running in this thread (None: not a page's call, e.g. a download).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("hub_deadline", default=None)


class HubUnreachable(Exception):
    """Raised inside a page's Hub call instead of the client's network errors: huggingface_hub
    retries those five times with back-off (~23 s); a page wants the answer at once, and no
    retry may outlive the request that asked."""

    def __init__(self, cause: str, *, timed_out: bool = False) -> None:
        super().__init__(cause)
        self.timed_out = timed_out


class _PageDeadlineTransport(httpx2.HTTPTransport):
    """The Hub client's transport. For a page's call (a deadline is set) it fails fast: a refused
    connection or unknown name at once, a request started after the deadline not at all, and no
    request waits past the deadline."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = _deadline.get()
        if deadline is None:
            return super().handle_request(request)
        left = deadline - time.monotonic()
        if left <= 0:
            raise HubUnreachable("the page stopped waiting", timed_out=True)
        request.extensions["timeout"] = httpx2.Timeout(left).as_dict()
        try:
            return super().handle_request(request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as error:
            raise HubUnreachable(_connect_failure(error)) from None
        except httpx2.TimeoutException:
            raise HubUnreachable("no answer in time", timed_out=True) from None


def _connect_failure(error: Exception) -> str:
    text = str(error)
    if "Name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
        return "name resolution failed"
    if "refused" in text.lower():
        return "connection refused"
    return text or type(error).__name__


def _hub_client() -> httpx2.Client:
    """huggingface_hub's own client (its request hook: HF_HUB_OFFLINE, request ids) on our transport."""
    from huggingface_hub.utils._http import hf_request_event_hook

    return httpx2.Client(
        transport=_PageDeadlineTransport(),
        event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True,
        timeout=None,
    )


set_client_factory(_hub_client)


def unreachable_message(cause: str) -> str:
    return (
        f"Could not reach the Hugging Face Hub at {hf_constants.ENDPOINT} ({cause}). "
        "Check the network, or set HF_ENDPOINT to a reachable Hub mirror; to work without the Hub, "
        "set HF_HUB_OFFLINE=1. Your local models still work, and models already on disk can be served from "
        "the folders an administrator allows under Models → Model folders."
    )


def _with_this_deadline(func: Callable[..., T]) -> Callable[..., T]:
    """`func` to run in a worker thread under the caller's deadline (threads do not inherit it)."""
    deadline = _deadline.get()

    def run(*args: Any) -> T:
        token = _deadline.set(deadline)
        try:
            return func(*args)
        finally:
            _deadline.reset(token)

    return run


_SLOW_HUB = (
    "The Hugging Face Hub did not answer in time: it may be down, or this machine is offline. "
    "Your local models still work."
)


def _with_deadline(func: Callable[[], T]) -> T:
    """Run a Hub call with a deadline: failures come back at once, slowness at the deadline."""
    token = _deadline.set(time.monotonic() + hub_timeout())
    try:
        future = _pool.submit(_with_this_deadline(func))
    finally:
        _deadline.reset(token)
    try:
        return future.result(timeout=hub_timeout() + 0.5)
    except HubUnreachable as error:
        if not error.timed_out:
            raise HubError(unreachable_message(str(error))) from None
        raise HubError(_SLOW_HUB) from None
    except FutureTimeout:
        raise HubError(_SLOW_HUB) from None
    except OfflineModeIsEnabled:
        raise HubError(
            "HF_HUB_OFFLINE is set: the Hub is not asked. Your local models still work; "
            "unset HF_HUB_OFFLINE to search the Hub."
        ) from None
    except RepositoryNotFoundError:
        raise HubError("No such model on the Hub (or it is private and no token is set).") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise HubError(f"The Hugging Face Hub answered with an error (HTTP {status}). Try again later.") from None
    except Exception as error:  # OSError, httpx errors and the client's own
        raise HubError(unreachable_message(type(error).__name__)) from None


def fits_in_memory(size: int | None) -> bool:
    """The weights fit in what models may use on this machine (the figure the System page shows)."""
    return size is not None and size <= for_models().bytes


def quantization_from(repo_id: str, dtypes: list[str]) -> str | None:
    name = repo_id.split("/")[-1].lower()
    if match := re.search(r"(?:^|[-_])(\d{1,2})-?bits?(?:$|[-_])", name):
        return f"{match[1]}-bit"
    for label in ("bf16", "fp16", "f16", "f32", "mxfp4"):
        if re.search(rf"(?:^|[-_]){label}(?:$|[-_])", name):
            return label.upper()
    real = [d for d in dtypes if d not in ("U32", "U8", "I32")]
    return real[0] if len(real) == 1 else None


@dataclass
class HubModel:
    repo_id: str
    sha: str | None
    downloads: int | None
    likes: int | None
    last_modified: datetime | None
    parameters: int | None
    quantization: str | None
    size: int | None = None
    files: list[tuple[str, int]] = field(default_factory=list)
    downloaded: bool = False
    kind: str = CHAT  # library.kinds: from the tags here, from config and files on the model's page

    @property
    def fits(self) -> bool:
        return fits_in_memory(self.size)


def _file_sizes(repo_id: str, sha: str | None) -> tuple[int, list[tuple[str, int]]]:
    """Total size and (file, size) list from the Hub's file metadata, remembered per commit."""
    key = (repo_id, sha or "")
    with _sizes_lock:
        if sha and key in _sizes:
            return _sizes[key]
    info = HfApi().model_info(repo_id, revision=sha, files_metadata=True)
    files = [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    result = (sum(size for _, size in files), files)
    with _sizes_lock:
        _sizes[(repo_id, info.sha or sha or "")] = result
        while len(_sizes) > SIZES_REMEMBERED:
            del _sizes[next(iter(_sizes))]
    return result


def _model_from(info: Any, downloaded: set[str]) -> HubModel:
    safetensors = getattr(info, "safetensors", None)
    dtypes = list(safetensors.parameters) if safetensors else []
    return HubModel(
        repo_id=info.id,
        sha=info.sha,
        downloads=info.downloads,
        likes=info.likes,
        last_modified=info.last_modified,
        parameters=safetensors.total if safetensors else None,
        quantization=quantization_from(info.id, dtypes),
        downloaded=info.id in downloaded,
        kind=model_kind(tags=getattr(info, "tags", None) or [], pipeline_tag=getattr(info, "pipeline_tag", None)),
    )


def hub_search(*, query: str, author: str, sort: str, max_size: int | None) -> list[HubModel]:
    """Models matching `query` (author "" for anyone), with sizes from the Hub's file sizes."""

    def run() -> list[HubModel]:
        infos = list(
            HfApi().list_models(
                search=query or None,
                author=author or None,
                sort=SORTS.get(sort, "downloads"),  # type: ignore[arg-type]
                limit=SEARCH_LIMIT,
                expand=["downloads", "likes", "lastModified", "safetensors", "sha", "tags", "pipeline_tag"],  # type: ignore[list-item]
            )
        )
        downloaded = set(cached_repo_ids())
        models = [_model_from(info, downloaded) for info in infos]
        for model, (size, files) in zip(
            models, _size_pool.map(_with_this_deadline(lambda m: _file_sizes(m.repo_id, m.sha)), models), strict=True
        ):
            model.size, model.files = size, files
        return [m for m in models if max_size is None or (m.size is not None and m.size <= max_size)]

    return _with_deadline(run)


@dataclass
class HubModelPage:
    model: HubModel
    config: dict[str, Any]
    readme: str


def _fetch_text(repo_id: str, filename: str, revision: str | None) -> str:
    """A small file's text straight from the Hub, without putting it in the cache (a lone
    config.json in the cache would look like a downloaded model)."""
    # build_hf_headers carries HF_TOKEN, which a gated repo needs (the session alone sends none).
    url = hf_hub_url(repo_id, filename, revision=revision)
    response = get_session().get(url, headers=build_hf_headers(), follow_redirects=True)
    if response.status_code == 404:
        return ""
    hf_raise_for_status(response)
    return response.text


def hub_config(repo_id: str) -> dict[str, Any]:
    """A repo's config.json from the Hub ({} when it has none), within the deadline; kept for ten
    minutes, since the profile form asks again as the user types. Raises HubError (remembered for
    a minute, so a Hub that does not answer holds up one form view, not every one)."""
    import json

    from django.core.cache import cache

    key = f"hub:config:{repo_id}"
    cached = cache.get(key)
    if isinstance(cached, dict):
        return cached
    if isinstance(failed := cache.get(f"{key}:error"), str):
        raise HubError(failed)

    def run() -> dict[str, Any]:
        try:
            loaded = json.loads(_fetch_text(repo_id, "config.json", None) or "{}")
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    try:
        config = _with_deadline(run)
    except HubError as error:
        cache.set(f"{key}:error", str(error), 60)
        raise
    cache.set(key, config, 600)
    return config


def hub_model(repo_id: str) -> HubModelPage:
    import json

    def run() -> HubModelPage:
        info = HfApi().model_info(repo_id, files_metadata=True)
        model = _model_from(info, set(cached_repo_ids()))
        model.files = [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
        model.size = sum(size for _, size in model.files)
        names = {name for name, _ in model.files}
        config: dict[str, Any] = {}
        if "config.json" in names:
            try:
                loaded = json.loads(_fetch_text(repo_id, "config.json", info.sha))
                config = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                config = {}
        readme = _fetch_text(repo_id, "README.md", info.sha) if "README.md" in names else ""
        tags = getattr(info, "tags", None) or []
        model.kind = model_kind(config=config, tags=tags, files=names, pipeline_tag=getattr(info, "pipeline_tag", None))
        return HubModelPage(model=model, config=config, readme=first_paragraph(readme))

    return _with_deadline(run)


def first_paragraph(card: str) -> str:
    """The model card's first paragraph of prose: after the YAML header, not a heading."""
    text = card
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4 :] if end != -1 else ""
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block and not block.startswith(("#", "<", "!", "|", "```")):
            return block[:800]
    return ""
