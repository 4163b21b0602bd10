"""Server states and the transitions allowed between them (after supervisord's).

No imports from the rest of the app: the state machine can be read and tested on its own.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FATAL = "fatal"


ALLOWED: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.BACKOFF, State.FATAL, State.STOPPING}),
    State.RUNNING: frozenset({State.UNHEALTHY, State.BACKOFF, State.STOPPING}),
    State.UNHEALTHY: frozenset({State.RUNNING, State.BACKOFF, State.STOPPING}),
    State.BACKOFF: frozenset({State.STARTING, State.FATAL, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.FATAL: frozenset({State.STARTING, State.STOPPED}),
}

# The groups every module asks about; nowhere else spells a set of states out by hand.
TRANSIENT = frozenset({State.STARTING, State.STOPPING, State.BACKOFF, State.UNHEALTHY})
"""About to change by itself."""
WITH_PROCESS = frozenset({State.STARTING, State.RUNNING, State.UNHEALTHY, State.STOPPING})
"""A process of ours should be alive."""
PROBED = frozenset({State.STARTING, State.RUNNING, State.UNHEALTHY})
"""The supervisor sends GET /health."""
UP = frozenset({State.RUNNING, State.UNHEALTHY})
"""Serving (perhaps badly): counts as up on the dashboard."""
FAILED = frozenset({State.FATAL, State.BACKOFF, State.UNHEALTHY})
"""Not well: the dashboard says why."""
AT_REST = frozenset({State.STOPPED, State.FATAL})
"""No process and none coming by itself."""
BUSY = frozenset(State) - AT_REST
"""Neither stopped nor fatal: its model and profile are in use."""


def is_allowed(current: State, new: State) -> bool:
    return new in ALLOWED[current]
