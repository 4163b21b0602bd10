"""Change counters: a cheap way for many processes (web workers, nodes sharing one database) to
know that something they keep in memory changed. Whoever changes it bumps the counter in the same
transaction; whoever remembers it reads the counter now and then (one primary-key SELECT) and
forgets what it kept when the number moved. In the process that made the change, the listeners
hear of it at once, when the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import F

from core.models import ChangeCounter

ROUTES = "routes"  # API keys, people, profiles, servers' states: what the gateway answers from memory

_listeners: dict[str, list[Callable[[], None]]] = {}


def changes_bump(topic: str = ROUTES) -> None:
    """Count one change of `topic`; this process's listeners hear of it once it is committed."""
    if not ChangeCounter.objects.filter(topic=topic).update(value=F("value") + 1):
        ChangeCounter.objects.get_or_create(topic=topic, defaults={"value": 1})
    for listener in _listeners.get(topic, []):
        transaction.on_commit(listener)


def changes_read(topic: str = ROUTES) -> int:
    """The number of changes of `topic` so far (0 before the first)."""
    return ChangeCounter.objects.filter(topic=topic).values_list("value", flat=True).first() or 0


def changes_listen(listener: Callable[[], None], topic: str = ROUTES) -> None:
    """Call `listener` in this process after each committed change of `topic` made here."""
    _listeners.setdefault(topic, []).append(listener)
