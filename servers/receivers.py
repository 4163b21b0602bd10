"""The answers `servers` gives to the questions of the apps below it (profiles/signals.py,
library/signals.py), connected by `ServersConfig.ready`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from django.dispatch import receiver

from library.selectors import ModelUse
from library.signals import model_uses_wanted, profile_folders_wanted
from profiles.models import ServerProfile
from profiles.selectors import ServerStatus
from profiles.signals import server_statuses_wanted, serving_profile_wanted
from servers import selectors


@receiver(server_statuses_wanted)
def statuses_answer(sender: Any, *, profiles: Sequence[ServerProfile], **kwargs: Any) -> dict[int, ServerStatus]:
    return selectors.profile_server_statuses(profiles)


@receiver(serving_profile_wanted)
def serving_answer(sender: Any, *, pid: int, **kwargs: Any) -> ServerProfile | None:
    return selectors.profile_serving(pid)


@receiver(model_uses_wanted)
def model_uses_answer(sender: Any, *, repo_ids: Collection[str], **kwargs: Any) -> dict[str, ModelUse]:
    return selectors.model_uses(repo_ids)


@receiver(profile_folders_wanted)
def profile_folders_answer(sender: Any, **kwargs: Any) -> list[str]:
    return selectors.profile_folders()
