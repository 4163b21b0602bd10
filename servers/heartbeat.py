"""Is the supervisor running? One answer for the dashboard's banner and the System page.

Running means its heartbeat is fresher than MLXM_HEARTBEAT_STALE seconds and it has not said it
stopped (a clean stop writes `stopped_at`, so the answer changes at once, not after the timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from servers.models import SupervisorHeartbeat


@dataclass(frozen=True)
class SupervisorStatus:
    running: bool
    pid: int | None
    hostname: str
    started_at: datetime | None
    beat_at: datetime | None
    stopped_at: datetime | None
    uptime: timedelta | None
    heartbeat_age: timedelta | None
    reason: str

    @property
    def missing(self) -> bool:
        """It has never run here."""
        return self.beat_at is None

    @property
    def stale(self) -> bool:
        """Not running (crashed, killed or stopped): what the dashboard's banner warns about."""
        return not self.running

    @property
    def heartbeat_seconds(self) -> int | None:
        return int(self.heartbeat_age.total_seconds()) if self.heartbeat_age is not None else None


def supervisor_status(*, now: datetime | None = None) -> SupervisorStatus:
    now = now or timezone.now()
    beat = SupervisorHeartbeat.objects.filter(pk=1).first()
    if beat is None or beat.beat_at is None:
        return SupervisorStatus(False, None, "", None, None, None, None, None, "It has never run here.")
    age = now - beat.beat_at
    stale = age > timedelta(seconds=settings.MLXM_HEARTBEAT_STALE)
    stopped = beat.stopped_at is not None and beat.stopped_at >= beat.beat_at
    if stopped:
        reason = "It stopped cleanly."
    elif stale:
        reason = "Its heartbeat is stale: it has probably crashed or been killed."
    else:
        reason = ""
    running = not (stale or stopped)
    return SupervisorStatus(
        running=running,
        pid=beat.pid,
        hostname=beat.hostname,
        started_at=beat.started_at,
        beat_at=beat.beat_at,
        stopped_at=beat.stopped_at,
        uptime=(now - beat.started_at) if running and beat.started_at else None,
        heartbeat_age=age,
        reason=reason,
    )
