"""Clean-ups of the apps above servers that the supervisor runs with its own, about once a minute.

The supervisor cannot import those apps (they sit above servers), and a clean-up done on their
request path would cost a write per request. So such an app registers a function when it is ready
(its AppConfig.ready), and the supervisor calls each one, with the time, where it prunes its samples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Pruner(Protocol):
    def __call__(self, *, now: datetime) -> object: ...


_pruners: list[Pruner] = []


def pruner_register(pruner: Pruner) -> None:
    """Called once by an app above servers (a second call with the same function changes nothing)."""
    if pruner not in _pruners:
        _pruners.append(pruner)


def pruners() -> tuple[Pruner, ...]:
    return tuple(_pruners)
