"""The transition table and its one choke point: illegal moves are refused and leave no trace."""

from __future__ import annotations

import itertools

import pytest

from profiles.models import ServerProfile
from servers.models import Server, ServerEvent
from servers.states import ALLOWED, State, is_allowed
from servers.supervisor.transitions import IllegalTransition, transition

ILLEGAL = [(a, b) for a, b in itertools.product(State, State) if b not in ALLOWED[a]]
LEGAL = [(a, b) for a, targets in ALLOWED.items() for b in sorted(targets)]


def test_every_state_has_an_entry_and_fatal_is_left_only_to_start_or_stop() -> None:
    assert set(ALLOWED) == set(State)
    assert ALLOWED[State.FATAL] == {State.STARTING, State.STOPPED}
    assert ALLOWED[State.STOPPED] == {State.STARTING}
    assert not any(is_allowed(s, s) for s in State)


@pytest.fixture
def server(db: None) -> Server:
    profile = ServerProfile.objects.create(name="x", model="/nowhere", port=9300)
    return Server.objects.create(profile=profile)


@pytest.mark.parametrize(("current", "new"), ILLEGAL, ids=lambda s: str(s))
def test_illegal_transition_is_refused(server: Server, current: State, new: State) -> None:
    Server.objects.filter(pk=server.pk).update(state=current)
    server.refresh_from_db()
    with pytest.raises(IllegalTransition):
        transition(server, new, cause="test")
    server.refresh_from_db()
    assert server.state == current
    assert not ServerEvent.objects.exists()


@pytest.mark.parametrize(("current", "new"), LEGAL, ids=lambda s: str(s))
def test_allowed_transition_writes_state_and_event(server: Server, current: State, new: State) -> None:
    Server.objects.filter(pk=server.pk).update(state=current, desired_state="running")
    server.refresh_from_db()
    transition(server, new, cause="test", message="because", last_error="e")
    server.refresh_from_db()
    assert (server.state, server.last_error) == (new, "e")
    assert server.desired_state == "running", "the web side's column is left alone"
    event = ServerEvent.objects.get()
    assert (event.from_state, event.to_state, event.cause, event.message) == (current, new, "test", "because")
