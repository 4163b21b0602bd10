"""What the dashboard shows, read from the database only (the supervisor's records) in a fixed
number of queries whatever the number of servers: the profiles with their servers in one query,
the last hour of samples aggregated per server and minute in another, the heartbeat in a third."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.db.models import Avg, FloatField, Func, IntegerField, Value
from django.db.models.functions import Cast
from django.utils import timezone

from profiles.models import ServerProfile
from servers.charts import sparkline_points
from servers.models import DesiredState, Server, ServerSample, ServerState, SupervisorHeartbeat
from servers.states import TRANSIENT

CHART_WINDOW = timedelta(hours=1)
CHART_BUCKETS = 60
SPARK_WIDTH, SPARK_HEIGHT = 120.0, 28.0
FAST_POLL, SLOW_POLL = 1, 5
UP_STATES = (ServerState.RUNNING, ServerState.UNHEALTHY)
FAILED_STATES = (ServerState.FATAL, ServerState.BACKOFF, ServerState.UNHEALTHY)


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column, in the database (for bucketing samples)."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)")

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="UNIX_TIMESTAMP(%(expressions)s)")


@dataclass
class Series:
    memory: list[float | None]
    cpu: list[float | None]

    @property
    def memory_points(self) -> str:
        return sparkline_points(self.memory, SPARK_WIDTH, SPARK_HEIGHT)

    @property
    def cpu_points(self) -> str:
        top = max([100.0, *(v for v in self.cpu if v is not None)])
        return sparkline_points(self.cpu, SPARK_WIDTH, SPARK_HEIGHT, maximum=top)

    @property
    def memory_peak(self) -> float | None:
        return max((v for v in self.memory if v is not None), default=None)

    @property
    def has_data(self) -> bool:
        return any(v is not None for v in self.memory)


def _empty_series() -> Series:
    return Series([None] * CHART_BUCKETS, [None] * CHART_BUCKETS)


@dataclass
class Card:
    profile: ServerProfile
    server: Server
    series: Series = field(default_factory=_empty_series)
    note: str = ""  # the answer to the button just pressed (htmx)
    note_level: str = "info"

    @property
    def is_up(self) -> bool:
        return self.server.state in UP_STATES

    @property
    def uptime(self) -> timedelta | None:
        if not self.is_up or self.server.started_at is None:
            return None
        return timezone.now() - self.server.started_at

    @property
    def failure(self) -> str:
        """Why the server is not well, in words (empty when it is)."""
        server = self.server
        if server.state not in FAILED_STATES and not (server.state == ServerState.STOPPED and server.last_error):
            return ""
        reason = server.last_error.strip()
        if server.last_exit_code is not None:
            reason = f"{reason} (exit code {server.last_exit_code})" if reason else f"exit code {server.last_exit_code}"
        return reason

    @property
    def busy(self) -> bool:
        """Something is about to change: a transient state or an intent not yet acted on."""
        server = self.server
        if server.state in TRANSIENT or server.restart_requested != server.restart_handled:
            return True
        if server.desired_state == DesiredState.RUNNING:
            return server.state == ServerState.STOPPED
        return server.state in UP_STATES

    @property
    def pending(self) -> str:
        """The user's request the supervisor has not acted on yet, in words."""
        server = self.server
        if server.restart_requested != server.restart_handled and server.desired_state == DesiredState.RUNNING:
            return "restart requested"
        if server.desired_state == DesiredState.RUNNING and server.state == ServerState.STOPPED:
            return "start requested"
        if server.desired_state == DesiredState.STOPPED and server.state not in (
            ServerState.STOPPED,
            ServerState.STOPPING,
        ):
            return "stop requested"
        return ""

    @property
    def buttons(self) -> list[tuple[str, str, bool]]:
        """(action, label, enabled) for the card's buttons."""
        return [("start", "Start", self.can_start), ("stop", "Stop", self.can_stop), ("restart", "Restart", True)]

    @property
    def can_stop(self) -> bool:
        server = self.server
        return not (server.desired_state == DesiredState.STOPPED and server.state == ServerState.STOPPED)

    @property
    def can_start(self) -> bool:
        server = self.server
        return server.desired_state == DesiredState.STOPPED or server.state in (ServerState.FATAL, ServerState.STOPPED)


@dataclass(frozen=True)
class SupervisorStatus:
    beat_at: datetime | None
    stale_after: float

    @property
    def missing(self) -> bool:
        return self.beat_at is None

    @property
    def age(self) -> float | None:
        return None if self.beat_at is None else (timezone.now() - self.beat_at).total_seconds()

    @property
    def stale(self) -> bool:
        age = self.age
        return age is None or age > self.stale_after


@dataclass(frozen=True)
class MemoryBar:
    total: int
    available: int
    servers: int

    @property
    def used(self) -> int:
        return max(self.total - self.available, 0)

    @property
    def other(self) -> int:
        return max(self.used - self.servers, 0)

    def _percent(self, part: int) -> float:
        return round(100.0 * part / self.total, 1) if self.total else 0.0

    @property
    def servers_percent(self) -> float:
        return self._percent(min(self.servers, self.used))

    @property
    def other_percent(self) -> float:
        return self._percent(self.other)

    @property
    def used_percent(self) -> float:
        return self._percent(self.used)


@dataclass
class Dashboard:
    cards: list[Card]
    supervisor: SupervisorStatus
    memory: MemoryBar

    @property
    def busy(self) -> bool:
        return any(card.busy for card in self.cards)

    @property
    def poll_seconds(self) -> int:
        return FAST_POLL if self.busy else SLOW_POLL

    @property
    def running_count(self) -> int:
        return sum(1 for card in self.cards if card.is_up)


def supervisor_status() -> SupervisorStatus:
    beat = SupervisorHeartbeat.objects.filter(pk=1).values_list("beat_at", flat=True).first()
    return SupervisorStatus(beat_at=beat, stale_after=settings.MLXM_HEARTBEAT_STALE)


def sample_series(*, server_id: int | None = None, now: datetime | None = None) -> dict[int, Series]:
    """Memory and CPU of every server (or one) over the last hour, averaged per minute, in one query."""
    now = now or timezone.now()
    since = now - CHART_WINDOW
    step = CHART_WINDOW.total_seconds() / CHART_BUCKETS
    bucket = Cast((EpochSeconds("taken_at") - Value(since.timestamp())) / Value(step), IntegerField())
    rows = ServerSample.objects.filter(taken_at__gte=since, taken_at__lte=now)
    if server_id is not None:
        rows = rows.filter(server_id=server_id)
    aggregated = (
        rows.annotate(bucket=bucket)
        .values("server_id", "bucket")
        .annotate(rss=Avg("rss_bytes"), cpu=Avg("cpu_percent"))
        .order_by()
        .values_list("server_id", "bucket", "rss", "cpu")
    )
    series: dict[int, Series] = defaultdict(_empty_series)
    for sid, index, rss, cpu in aggregated:
        if 0 <= index < CHART_BUCKETS:
            s = series[sid]
            s.memory[index], s.cpu[index] = rss, cpu
    return series


def _server_of(profile: ServerProfile) -> Server:
    try:
        return profile.server
    except Server.DoesNotExist:
        return Server(profile=profile)  # never started: shown as stopped


def dashboard_data() -> Dashboard:
    profiles = list(ServerProfile.objects.select_related("server").order_by("name"))
    series = sample_series()
    cards = []
    for profile in profiles:
        server = _server_of(profile)
        cards.append(Card(profile, server, series.get(server.pk) or _empty_series()))
    vm = psutil.virtual_memory()
    ours = sum(card.server.rss_bytes or 0 for card in cards if card.is_up)
    return Dashboard(cards, supervisor_status(), MemoryBar(int(vm.total), int(vm.available), ours))


def card_for(profile: ServerProfile) -> Card:
    server = Server.objects.filter(profile=profile).first() or Server(profile=profile)
    server.profile = profile
    series = sample_series(server_id=server.pk).get(server.pk) if server.pk else None
    return Card(profile, server, series or _empty_series())
