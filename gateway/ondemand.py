"""A request for a stopped on-demand model: ask the supervisor to start it (once, however many
requests ask at the same moment) and wait until it runs.

The wait reads the server's row (the web process's truth) whenever the supervisor says a state
changed (a datagram, `core.wakeup.StateWatch`), and every POLL_INTERVAL in case a nudge was
lost, so the request goes on as soon as `running` is written; it is bounded by
`MLXM_ON_DEMAND_TIMEOUT` (then 504). Requests in one worker share one waiting task; across
workers the row lock makes the first one start it and the others join.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.models import User
from core.wakeup import StateWatch
from gateway.errors import GatewayError
from profiles.models import ServerProfile
from servers.models import DesiredState, Server
from servers.services import ServerActionRefused, server_start
from servers.states import State

POLL_INTERVAL = 0.25  # seconds between reads of the row while waiting with no nudge
WAKES_ON = frozenset({State.STOPPED, State.STOPPING, State.STARTING})
RUNNING = frozenset({State.RUNNING, State.UNHEALTHY})
RETRY_AFTER_FAILED = 30

_starts: dict[tuple[int, int], asyncio.Task[None]] = {}


class StartNeeded(Exception):
    """The model is not running, but it is on demand: the request may start it."""

    def __init__(self, profile: ServerProfile) -> None:
        super().__init__(profile.name)
        self.profile = profile


async def start_and_wait(*, profile: ServerProfile, by: User) -> None:
    """Return once the profile's server runs; GatewayError (503 or 504) when it does not."""
    key = (id(asyncio.get_running_loop()), profile.pk)
    task = _starts.get(key)
    if task is None:
        task = asyncio.ensure_future(_start_and_wait(profile, by))
        _starts[key] = task
        task.add_done_callback(lambda done: _forget(key, done))
    # One client going away must not cancel the start the others wait for.
    await asyncio.shield(task)


def _forget(key: tuple[int, int], task: asyncio.Task[None]) -> None:
    if _starts.get(key) is task:
        del _starts[key]
    if not task.cancelled():
        task.exception()  # retrieved here too, in case every waiter went away


async def _start_and_wait(profile: ServerProfile, by: User) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MLXM_ON_DEMAND_TIMEOUT
    with StateWatch() as watch:  # listening before the start is asked for: no change is missed
        await sync_to_async(_ask_start)(profile, by)
        await _wait_running(profile, watch, deadline)


async def _wait_running(profile: ServerProfile, watch: StateWatch, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    read = sync_to_async(_server_now)
    while True:
        state, desired, last_error = await read(profile.pk)
        if state in RUNNING:
            return
        if state in (State.BACKOFF, State.FATAL):
            why = last_error.strip()[:500] or "no reason was recorded"
            raise GatewayError(503, f"'{profile.name}' could not start: {why}", retry_after=RETRY_AFTER_FAILED)
        if desired == DesiredState.STOPPED:
            raise GatewayError(
                503, f"'{profile.name}' was stopped while it was starting.", retry_after=RETRY_AFTER_FAILED
            )
        left = deadline - loop.time()
        if left <= 0:
            raise GatewayError(
                504,
                f"'{profile.name}' did not start within {settings.MLXM_ON_DEMAND_TIMEOUT:g} s "
                "(MLXM_ON_DEMAND_TIMEOUT); it is still starting, try again shortly.",
            )
        await watch.wait(min(POLL_INTERVAL, left))


def _ask_start(profile: ServerProfile, by: User) -> None:
    """Start it unless another request (here or in another worker) already has."""
    with transaction.atomic():
        server = Server.objects.select_for_update().filter(profile=profile).first()
        if server is not None and server.desired_state == DesiredState.RUNNING and server.state != State.FATAL:
            return
        try:
            server_start(profile=profile, by=by, cause="gateway")
        except ServerActionRefused as refused:
            if server is not None and server.state == State.FATAL:
                raise GatewayError(503, str(refused), retry_after=RETRY_AFTER_FAILED) from None
        except PermissionDenied as denied:
            raise GatewayError(403, str(denied) or f"You may not start '{profile.name}'.") from None


def _server_now(profile_id: int) -> tuple[State, str, str]:
    row = Server.objects.filter(profile_id=profile_id).values_list("state", "desired_state", "last_error").first()
    if row is None:
        return State.STOPPED, DesiredState.STOPPED, ""
    return State(row[0]), row[1], row[2]
