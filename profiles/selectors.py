"""Reads about profiles that several views share.

Profiles sit below servers and cannot import them, yet a profile page shows its server's state and
refuses to delete a profile whose server is in use. So profiles ask through two functions,
`server_statuses` and `profile_serving`, and the servers app answers them: it registers its
functions at start-up (servers.apps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from profiles.models import ServerProfile


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

StatusLookup = Callable[[Sequence[ServerProfile]], dict[int, ServerStatus]]
PidLookup = Callable[[int], ServerProfile | None]
_statuses: StatusLookup | None = None
_serving: PidLookup | None = None


def answer(*, statuses: StatusLookup, serving: PidLookup) -> None:
    """Called once by the app that knows servers."""
    global _statuses, _serving
    _statuses, _serving = statuses, serving


def _unanswered() -> ImproperlyConfigured:
    return ImproperlyConfigured("No app answers the profiles' questions: is `servers` in INSTALLED_APPS?")


def server_statuses(profiles: Sequence[ServerProfile]) -> dict[int, ServerStatus]:
    """Each profile's server status by profile pk, in one query; a profile that never ran is NEVER_RAN."""
    if _statuses is None:
        raise _unanswered()
    known = _statuses(profiles) if profiles else {}
    return {profile.pk: known.get(profile.pk, NEVER_RAN) for profile in profiles}


def profile_serving(pid: int) -> ServerProfile | None:
    """The profile whose server is the process `pid`, if it is one of ours."""
    if _serving is None:
        raise _unanswered()
    return _serving(pid)


def server_status(profile: ServerProfile) -> ServerStatus:
    return server_statuses([profile])[profile.pk]
