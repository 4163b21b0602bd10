"""Reads about the library that several views share.

The library sits below profiles and servers and cannot import them, yet its pages show which
profiles use a model and refuse to delete a model a server is using. So the library asks one
question, `model_uses` (and lists the folders profiles serve, `profile_folders`): signals in
library/signals.py that servers/receivers.py answers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from core.questions import ask
from library.signals import model_uses_wanted, profile_folders_wanted


@dataclass(frozen=True)
class ModelUse:
    profiles: list[str] = field(default_factory=list)  # names of the profiles that name the model
    busy_servers: list[str] = field(default_factory=list)  # profiles whose server is neither stopped nor fatal
    # every profile naming it as main or draft model -> its owner's user id (for who may delete it)
    owners: dict[str, int | None] = field(default_factory=dict)


def profile_folders() -> list[str]:
    """The absolute model paths this node's profiles name."""
    folders: list[str] = ask(profile_folders_wanted)
    return folders


def model_uses(repo_ids: Collection[str]) -> dict[str, ModelUse]:
    """Who uses each model (as main or draft model), for any number of models in a constant number of queries."""
    known = ask(model_uses_wanted, repo_ids=repo_ids) if repo_ids else {}
    return {repo_id: known.get(repo_id, ModelUse()) for repo_id in repo_ids}
