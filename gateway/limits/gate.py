"""The two calls the request path makes (issue 29's whole interface for `/v1/`; made by
gateway/relay.py's `answer`, which both the fast path and Django's view go through, and by the
meter, which gives the passage back):

    passage = await gate_enter(user=..., key=..., profile=..., flavour=...)   # may raise GatewayError
    ... send upstream; add passage.headers to the answer (or the stream's first response) ...
    gate_exit(passage, prompt_tokens=..., completion_tokens=...)   # once, when the answer is done

`gate_enter` checks the caller's limits first (a refused request never queues), then waits for its
turn in the profile's fair queue; a refusal is a GatewayError (429 or 503, Retry-After, the
rate-limit headers) that `gateway.errors.error_response` answers. `gate_exit` frees the queue slot
and charges the answer's real usage (None for both when it failed or the client went away); it is
safe to call twice. A cancelled `gate_enter` (the client went away) leaves nothing behind.

The caller's limits are read from the database at most every LIMITS_FRESH seconds per key (a
change of limits applies within that time) unless the caller passes `limits` it cached itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from accounts.models import User
from gateway.errors import Flavour
from gateway.limits.admission import Admission, CallerLimits, Refusal, admit, caller_limits_read, settle
from gateway.limits.headers import rate_headers, refusal_error
from gateway.limits.queue import Ticket, profile_capacity, queue_enter, queue_leave
from gateway.models import ApiKey

LIMITS_FRESH = 5.0
_read: dict[tuple[int, int | None], tuple[float, CallerLimits]] = {}


def caller_limits(*, user: User, key: ApiKey | None, now: float | None = None) -> CallerLimits:
    """The caller's limits, read again when older than LIMITS_FRESH seconds (sync: the ORM)."""
    now = time.monotonic() if now is None else now
    cache_key = (user.pk, key.pk if key is not None else None)
    cached = _read.get(cache_key)
    if cached is None or now - cached[0] > LIMITS_FRESH:
        cached = _read[cache_key] = (now, caller_limits_read(user=user, key=key))
    return cached[1]


def caller_limits_forget() -> None:
    """Read every caller's limits again on their next request (tests: ids repeat between them)."""
    _read.clear()


def _caller_limits_in_thread(user: User, key: ApiKey | None) -> CallerLimits:
    close_old_connections()  # a thread of the pool: its connection may be old or broken
    return caller_limits(user=user, key=key)


async def caller_limits_soon(*, user: User, key: ApiKey | None) -> CallerLimits:
    """`caller_limits` from the event loop: from memory, or (every LIMITS_FRESH seconds per key)
    read in a thread, so that the fast path reads the database no more often than that."""
    cached = _read.get((user.pk, key.pk if key is not None else None))
    if cached is not None and time.monotonic() - cached[0] <= LIMITS_FRESH:
        return cached[1]
    return await sync_to_async(_caller_limits_in_thread, thread_sensitive=False)(user, key)


@dataclass
class Passage:
    admission: Admission
    ticket: Ticket | None
    capacity: int
    headers: dict[str, str] = field(default_factory=dict)


async def gate_enter(*, limits: CallerLimits, profile: Any, flavour: Flavour, who: str = "") -> Passage:
    """Admit against `limits` (see `caller_limits`), then take a turn for `profile`'s server."""
    verdict = admit(limits)
    if isinstance(verdict, Refusal):
        raise refusal_error(verdict, flavour)
    capacity = profile_capacity(profile)
    try:
        ticket = await queue_enter(
            profile_id=profile.pk, capacity=capacity, user_id=limits.user_id, key_id=limits.key_id, who=who
        )
    except BaseException:  # refused by the queue, or the client went away while waiting
        settle(verdict, prompt_tokens=None, completion_tokens=None)
        raise
    return Passage(admission=verdict, ticket=ticket, capacity=capacity, headers=rate_headers(verdict.state, flavour))


def gate_exit(
    passage: Passage | None, *, prompt_tokens: int | None, completion_tokens: int | None, handed_over: bool = False
) -> None:
    """The answer is done (or failed): the next in turn gets the slot, the tokens are charged.
    `handed_over`: another door serves the request (the fast path's hand-over to Django's view,
    which passes the gate again): its request is not counted twice."""
    if passage is None:
        return
    if passage.ticket is not None:
        queue_leave(passage.ticket, capacity=passage.capacity)
    settle(passage.admission, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, uncount=handed_over)
