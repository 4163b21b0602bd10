"""Reads about profiles that several views share.

Profiles sit below servers and cannot import them, yet a profile page shows its server's state and
refuses to delete a profile whose server is in use. So profiles ask two questions, signals in
profiles/signals.py that servers/receivers.py answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.questions import ask
from profiles.models import ServerProfile
from profiles.signals import server_statuses_wanted, serving_profile_wanted


@dataclass(frozen=True)
class ServerStatus:
    """What profile pages need to know of a profile's server."""

    state: str = "stopped"  # a servers.states.State value, for the badge
    label: str = "Stopped"
    set_to_run: bool = False  # the user asked for it to run
    busy: bool = False  # neither stopped nor fatal

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"

    @property
    def deletable(self) -> bool:
        return not self.set_to_run and not self.busy


NEVER_RAN = ServerStatus()


def server_statuses(profiles: Sequence[ServerProfile]) -> dict[int, ServerStatus]:
    """Each profile's server status by profile pk, in one query; a profile that never ran is NEVER_RAN."""
    known = ask(server_statuses_wanted, profiles=profiles) if profiles else {}
    return {profile.pk: known.get(profile.pk, NEVER_RAN) for profile in profiles}


def profile_serving(pid: int) -> ServerProfile | None:
    """The profile whose server is the process `pid`, if it is one of ours."""
    profile: ServerProfile | None = ask(serving_profile_wanted, pid=pid)
    return profile


def server_status(profile: ServerProfile) -> ServerStatus:
    return server_statuses([profile])[profile.pk]
