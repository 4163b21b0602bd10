"""What the dashboard shows, read from the database only (the supervisor's records) in a fixed
number of queries whatever the number of servers: the profiles with their servers in one query,
the last hour of samples (one point per server and minute) in another, the nodes in a third
(with each node's newest memory sample: one more query per node).

The cards (servers/dashboard/cards.py) are grouped by node. A node whose supervisor is offline
(stale heartbeat) shows its servers' state as "unknown": nobody watches them, so "stopped" or
"running" would be a guess."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.safestring import SafeString, mark_safe

from nodes.models import Node
from nodes.status import SupervisorStatus, node_statuses, supervisor_status
from profiles.models import ServerProfile
from servers.charts import sparkline_points
from servers.dashboard.cards import NO_SPARKLINES, Card, Sparklines, card_extras
from servers.models import DesiredState, Server, ServerSample, ServerState
from servers.selectors import system_memory
from servers.states import UP

CHART_WINDOW = timedelta(hours=1)
CHART_BUCKETS = 60
SPARK_MIN_POINTS = 3  # sampled buckets (minutes) before a sparkline is drawn
# The sparklines have one point a minute: they are drawn again when a new minute begins, not at every
# poll (a 10 s memory missed at every other poll of a page polling every 5 s). The card's own figures
# (state, RSS, CPU, health) are read fresh at every poll.
SERIES_CACHE_SECONDS = 60
SPARK_WIDTH, SPARK_HEIGHT = 120.0, 28.0
FAST_POLL, SLOW_POLL = 1, 5
# What a card shows: loading only these keeps the 50-card query cheap (a deferred field read in a
# template would cost a query per card, which the query-count test would catch).
CARD_FIELDS = ["name", "model", "host", "port", "owner", "on_demand", "idle_minutes", "keep_running", "node"] + [
    f"server__{name}"
    for name in (
        "desired_state",
        "restart_requested",
        "state",
        "pid",
        "port",
        "started_at",
        "state_changed_at",
        "in_flight",
        "last_used_at",
        "restart_handled",
        "last_exit_code",
        "last_error",
        "restart_count",
        "last_health_ms",
        "rss_bytes",
        "cpu_percent",
    )
]


@dataclass
class Series:
    memory: list[float | None]
    cpu: list[float | None]

    @cached_property
    def memory_points(self) -> str:
        return sparkline_points(self.memory, SPARK_WIDTH, SPARK_HEIGHT)

    @cached_property
    def cpu_points(self) -> str:
        top = max([100.0, *(v for v in self.cpu if v is not None)])
        return sparkline_points(self.cpu, SPARK_WIDTH, SPARK_HEIGHT, maximum=top)

    @cached_property
    def memory_peak(self) -> float | None:
        return max((v for v in self.memory if v is not None), default=None)

    @cached_property
    def has_data(self) -> bool:
        """Enough minutes sampled to draw a line a person can read (one or two make a dot)."""
        return sum(v is not None for v in self.memory) >= SPARK_MIN_POINTS

    def sparklines(self) -> Sparklines:
        points = self.has_data
        return Sparklines(self.memory_points if points else "", self.cpu_points if points else "", self.memory_peak)


def _empty_series() -> Series:
    return Series([None] * CHART_BUCKETS, [None] * CHART_BUCKETS)


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


def memory_bar(node: Node, servers_bytes: int) -> MemoryBar:
    """A node's memory as its supervisor last sampled it: each sample is also written on the node's
    row (the System page reads the same sample), so the poll needs no query of its own; the sample
    table (or, for this machine, psutil) only before the supervisor ever reported."""
    if node.memory_total and node.memory_available is not None:
        return MemoryBar(node.memory_total, node.memory_available, servers_bytes)
    memory = system_memory(node)
    return MemoryBar(memory.total, memory.available, servers_bytes)


@dataclass
class NodeGroup:
    """One node's part of the dashboard: its supervisor, its memory bar and its servers."""

    status: SupervisorStatus
    memory: MemoryBar
    cards: list[Card]
    html: SafeString = field(default_factory=lambda: mark_safe(""))  # the cards, rendered by the view

    @property
    def node(self) -> Node:
        return self.status.node

    @property
    def running_count(self) -> int:
        return sum(1 for card in self.cards if card.is_up)


@dataclass
class Dashboard:
    cards: list[Card]
    groups: list[NodeGroup]
    series_cached: bool = False  # the sparklines came from the few-second cache (Server-Timing says so)

    @property
    def several_nodes(self) -> bool:
        """Headings per node only when there is more than one: one Mac looks as it always did."""
        return len(self.groups) > 1

    @property
    def supervisor(self) -> SupervisorStatus:
        """This machine's supervisor (the first group)."""
        return self.groups[0].status

    @property
    def memory(self) -> MemoryBar:
        return self.groups[0].memory

    @cached_property
    def busy(self) -> bool:
        return any(card.busy for card in self.cards)

    @property
    def poll_seconds(self) -> int:
        return FAST_POLL if self.busy else SLOW_POLL

    @property
    def running_count(self) -> int:
        return sum(1 for card in self.cards if card.is_up)


def sample_series(server_ids: Sequence[int], *, now: datetime | None = None) -> dict[int, Series]:
    """Memory and CPU of the given servers over the last hour, one point per minute, in one query.

    Each point is the newest sample of its minute, found by an index seek on (server, taken_at): the
    cost is servers x minutes whatever the supervisor's sampling rate (averaging every sample
    instead costs a sort of all of them).
    """
    if not server_ids:
        return {}
    now = now or timezone.now()
    step = CHART_WINDOW / CHART_BUCKETS
    first = now - CHART_WINDOW
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = []
    for i in range(CHART_BUCKETS):
        params += [i, adapt(first + step * i), adapt(first + step * (i + 1))]
    params += list(server_ids)
    quote = connection.ops.quote_name
    samples, servers = quote(ServerSample._meta.db_table), quote(Server._meta.db_table)
    sql = f"""
        WITH marks(i, lo, hi) AS (VALUES {", ".join(["(%s, %s, %s)"] * CHART_BUCKETS)})
        SELECT srv.id, marks.i, smp.rss_bytes, smp.cpu_percent
        FROM marks CROSS JOIN {servers} srv
        JOIN {samples} smp ON smp.id = (
            SELECT newest.id FROM {samples} newest
            WHERE newest.server_id = srv.id AND newest.taken_at > marks.lo AND newest.taken_at <= marks.hi
            ORDER BY newest.taken_at DESC LIMIT 1
        )
        WHERE srv.id IN ({", ".join(["%s"] * len(server_ids))})
    """
    series: dict[int, Series] = defaultdict(_empty_series)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for sid, index, rss, cpu in cursor.fetchall():
            point = series[sid]
            point.memory[index], point.cpu[index] = float(rss), float(cpu)
    return series


def recent_sample_series(server_ids: Sequence[int]) -> tuple[dict[int, Sparklines], bool]:
    """The servers' sparklines, drawn from `sample_series` and remembered (per process) for the same
    set of servers until the minute changes; and whether they came from that memory."""
    minute = int(timezone.now().timestamp()) // 60
    key = f"dashboard:sparklines:{minute}:" + ",".join(map(str, server_ids))
    drawn: dict[int, Sparklines] | None = cache.get(key)
    if drawn is not None:
        return drawn, True
    drawn = {pk: series.sparklines() for pk, series in sample_series(server_ids).items()}
    cache.set(key, drawn, SERIES_CACHE_SECONDS)
    return drawn, False


def _charted(server: Server, since: datetime) -> bool:
    """Servers worth a chart: up, or changed state within the chart's window."""
    return server.pk is not None and (
        server.state in UP or (server.state_changed_at is not None and server.state_changed_at >= since)
    )


# What a card shows for a profile never started (no Server row): one shared, never saved, never
# changed instance, since making a model instance computes every field's default (30 of them a poll).
NEVER_STARTED = Server(state=ServerState.STOPPED, desired_state=DesiredState.STOPPED)


def _server_of(profile: ServerProfile) -> Server:
    try:
        return profile.server
    except Server.DoesNotExist:
        return NEVER_STARTED


def dashboard_data() -> Dashboard:
    now = timezone.now()
    statuses = node_statuses(now=now)
    unknown = {status.node.pk for status in statuses if status.states_unknown}
    nodes: dict[int | None, Node] = {status.node.pk: status.node for status in statuses}
    profiles = list(ServerProfile.objects.select_related("server").only(*CARD_FIELDS).order_by("name"))
    servers = [_server_of(profile) for profile in profiles]
    since = now - CHART_WINDOW
    sparklines, cached = recent_sample_series([server.pk for server in servers if _charted(server, since)])
    root = reverse("servers:dashboard")
    extras = card_extras(profiles)
    cards = [
        Card(
            profile,
            server,
            sparklines.get(server.pk, NO_SPARKLINES),
            root=root,
            extras=extras.get(profile.pk, []),
            offline=profile.node_id in unknown,
            node=nodes.get(profile.node_id),
        )
        for profile, server in zip(profiles, servers, strict=True)
    ]
    groups = []
    for status in statuses:
        mine = [card for card in cards if card.profile.node_id == status.node.pk]
        ours = sum(card.server.rss_bytes or 0 for card in mine if card.server.state in UP)  # as last sampled
        groups.append(NodeGroup(status, memory_bar(status.node, ours), mine))
    return Dashboard(cards, groups, series_cached=cached)


def card_for(profile: ServerProfile) -> Card:
    server = Server.objects.filter(profile=profile).first() or Server(profile=profile)
    server.profile = profile
    series = sample_series([server.pk]).get(server.pk) if server.pk else None
    return Card(
        profile,
        server,
        series.sparklines() if series else NO_SPARKLINES,
        extras=card_extras([profile]).get(profile.pk, []),
        offline=supervisor_status(node=profile.node).states_unknown,
        node=profile.node,
    )
