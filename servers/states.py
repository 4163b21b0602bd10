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

TRANSIENT = frozenset({State.STARTING, State.STOPPING, State.BACKOFF, State.UNHEALTHY})


def is_allowed(current: State, new: State) -> bool:
    return new in ALLOWED[current]
