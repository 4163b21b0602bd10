"""Reads about the library that several views share.

The library sits below profiles and servers and cannot import them, yet its pages show which
profiles use a model and refuse to delete a model a server is using. So the library asks one
question, `model_uses` (and lists the folders profiles serve, `profile_folders`), and the servers
app answers them: it registers its functions at start-up (servers.apps).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class ModelUse:
    profiles: list[str] = field(default_factory=list)  # names of the profiles that name the model
    busy_servers: list[str] = field(default_factory=list)  # profiles whose server is neither stopped nor fatal
    # every profile naming it as main or draft model -> its owner's user id (for who may delete it)
    owners: dict[str, int | None] = field(default_factory=dict)


UsesLookup = Callable[[Collection[str]], dict[str, ModelUse]]
FoldersLookup = Callable[[], list[str]]
_lookup: UsesLookup | None = None
_folders: FoldersLookup | None = None


def answer_model_uses(lookup: UsesLookup, *, folders: FoldersLookup) -> None:
    """Called once by the app that knows profiles and servers: who uses each model, and which
    folders this node's profiles serve (the library lists them with its own)."""
    global _lookup, _folders
    _lookup, _folders = lookup, folders


def profile_folders() -> list[str]:
    """The absolute model paths this node's profiles name."""
    if _folders is None:
        raise ImproperlyConfigured("No app answers profile_folders: is `servers` in INSTALLED_APPS?")
    return _folders()


def model_uses(repo_ids: Collection[str]) -> dict[str, ModelUse]:
    """Who uses each model (as main or draft model), for any number of models in a constant number of queries."""
    if _lookup is None:
        raise ImproperlyConfigured("No app answers model_uses: is `servers` in INSTALLED_APPS?")
    known = _lookup(repo_ids) if repo_ids else {}
    return {repo_id: known.get(repo_id, ModelUse()) for repo_id in repo_ids}
