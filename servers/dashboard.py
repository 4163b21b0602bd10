"""What the dashboard shows, read from the database only (the supervisor's records) in a fixed
number of queries whatever the number of servers: the profiles with their servers in one query,
the last hour of samples (one point per server and minute) in another, the nodes in a third
(with each node's newest memory sample: one more query per node).

The cards are grouped by node. A node whose supervisor is offline (stale heartbeat) shows its
servers' state as "unknown": nobody watches them, so "stopped" or "running" would be a guess."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.safestring import SafeString, mark_safe

from accounts.models import User
from core.formatting import human_bytes
from core.web import gateway_base_url
from library.local import is_valid_repo_id, local_model_path
from nodes.models import Node
from nodes.status import SupervisorStatus, node_statuses, supervisor_status
from profiles.models import ServerProfile
from servers.charts import sparkline_points
from servers.models import DesiredState, Server, ServerSample, ServerState
from servers.selectors import system_memory
from servers.services import server_can_operate
from servers.states import AT_REST, FAILED, TRANSIENT, UP
from servers.templatetags.servers_extras import duration

CHART_WINDOW = timedelta(hours=1)
CHART_BUCKETS = 60
SPARK_MIN_POINTS = 3  # sampled buckets (minutes) before a sparkline is drawn
# The sparklines have one point a minute: they are drawn again when a new minute begins, not at every
# poll (a 10 s memory missed at every other poll of a page polling every 5 s). The card's own figures
# (state, RSS, CPU, health) are read fresh at every poll.
SERIES_CACHE_SECONDS = 60
SPARK_WIDTH, SPARK_HEIGHT = 120.0, 28.0
UNKNOWN = "unknown"  # the state shown for a server whose node is offline
STATE_LABELS = dict(ServerState.choices)  # get_state_display() costs more, 50 times a poll
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


@dataclass(frozen=True)
class CardExtra:
    """A section another app adds to the cards: its template, rendered with `data`."""

    template: str
    data: dict[str, Any]


# Apps above this one (the gateway) add sections to the cards without this app importing them:
# each provider gets the profiles on the page and returns profile pk -> its section (one query).
CardExtraProvider = Callable[[Sequence[ServerProfile]], dict[int, CardExtra]]
_card_extra_providers: list[CardExtraProvider] = []


def card_extra_register(provider: CardExtraProvider) -> None:
    """Called once by an app above servers, when it is ready (a second call with the same function
    changes nothing)."""
    if provider not in _card_extra_providers:
        _card_extra_providers.append(provider)


def card_extras(profiles: Sequence[ServerProfile]) -> dict[int, list[CardExtra]]:
    found: dict[int, list[CardExtra]] = {}
    for provider in _card_extra_providers:
        for pk, extra in provider(profiles).items():
            found.setdefault(pk, []).append(extra)
    return found


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


class Sparklines(NamedTuple):
    """What a card draws of its server's last hour: the lines' points (empty when too few minutes
    were sampled to draw one) and the memory peak. Small, so the per-minute cache is cheap to read."""

    memory_points: str = ""
    cpu_points: str = ""
    memory_peak: float | None = None


NO_SPARKLINES = Sparklines()


def _empty_series() -> Series:
    return Series([None] * CHART_BUCKETS, [None] * CHART_BUCKETS)


@dataclass
class Card:
    profile: ServerProfile
    server: Server
    sparklines: Sparklines = NO_SPARKLINES
    note: str = ""  # the answer to the button just pressed (htmx)
    note_level: str = "info"
    root: str = ""  # the dashboard's URL, the prefix of the card's links (reversed once per page)
    extras: list[CardExtra] = field(default_factory=list)
    offline: bool = False  # its node's supervisor went away without stopping it: the state shown is "unknown"
    node: Node | None = None  # the profile's node, when the caller has it already (no query per card)

    @cached_property
    def url(self) -> str:
        return f"{self.root or reverse('servers:dashboard')}{self.profile.pk}/"

    @cached_property
    def text(self) -> dict[str, Any]:
        """The card's figures, formatted once in Python (50 cards are re-rendered at every poll)."""
        server, up, dash = self.server, self.is_up, "—"
        uptime = self.uptime
        profile, sparklines = self.profile, self.sparklines
        return {
            "url": self.url,
            "name": profile.name,
            "model": profile.model,
            **self.reached_at,
            "state": UNKNOWN if self.offline else server.state,
            "state_label": "Unknown" if self.offline else STATE_LABELS.get(server.state, server.state),
            "desired": server.desired_state,
            "restarts": str(server.restart_count),
            "memory_points": sparklines.memory_points,
            "cpu_points": sparklines.cpu_points,
            "pid": str(server.pid) if server.pid else dash,
            "uptime": duration(uptime) if uptime is not None else dash,
            "rss": human_bytes(server.rss_bytes) if up and server.rss_bytes else dash,
            "cpu": f"{server.cpu_percent:.0f} %" if up and server.cpu_percent is not None else dash,
            "health": f"{server.last_health_ms:.0f} ms" if up and server.last_health_ms is not None else dash,
            "peak": human_bytes(int(sparklines.memory_peak)) if sparklines.memory_peak else "",
        }

    @cached_property
    def reached_at(self) -> dict[str, str]:
        """Where a client reaches the model: always a gateway, never the model server's own port
        (it takes no key and records no usage). On this Mac `base_url` is blank: the card shows
        the gateway at the address the page was reached at; on another Mac that node's gateway,
        MLXM_NODE_URL, or `reach_note` saying why there is none."""
        node = self.node
        if node is None or node.is_local:
            return {"base_url": "", "reach_note": ""}
        if not node.url:
            return {"base_url": "", "reach_note": f"through {node.name}'s gateway (its MLXM_NODE_URL is not set)"}
        return {"base_url": f"{node.url.rstrip('/')}/v1", "reach_note": ""}

    @cached_property
    def is_up(self) -> bool:
        return self.server.state in UP and not self.offline

    @cached_property
    def uptime(self) -> timedelta | None:
        if not self.is_up or self.server.started_at is None:
            return None
        return timezone.now() - self.server.started_at

    @cached_property
    def loading(self) -> str:
        """While starting: the model is loading (running means it has answered), and for how long."""
        server = self.server
        if server.state != ServerState.STARTING or server.started_at is None:
            return ""
        return f"Loading the model: {duration(timezone.now() - server.started_at)} so far"

    @cached_property
    def failure(self) -> str:
        """Why the server is not well, in words (empty when it is)."""
        server = self.server
        if server.state not in FAILED and not (server.state == ServerState.STOPPED and server.last_error):
            return ""
        reason = server.last_error.strip()
        if server.last_exit_code is not None:
            reason = f"{reason} (exit code {server.last_exit_code})" if reason else f"exit code {server.last_exit_code}"
        return reason

    @cached_property
    def model_missing(self) -> bool:
        """A failed server whose model (a Hub repo id) is no longer on this machine: offer to download it."""
        if self.server.state not in FAILED or self.offline:
            return False
        model, node = self.profile.model, self.node or self.profile.node
        if not is_valid_repo_id(model):
            return False
        if node.is_local:
            return local_model_path(model) is None
        return model not in node.local_repo_ids  # another Mac's disk, as its supervisor last listed it

    @cached_property
    def busy(self) -> bool:
        """Something is about to change: a transient state or an intent not yet acted on (nothing
        changes on an offline node until its supervisor is back: no fast polling meanwhile)."""
        server = self.server
        if self.offline:
            return False
        if server.state in TRANSIENT or server.restart_requested != server.restart_handled:
            return True
        if server.desired_state == DesiredState.RUNNING:
            return server.state == ServerState.STOPPED
        return server.state in UP

    @cached_property
    def pending(self) -> str:
        """The user's request the supervisor has not acted on yet, in words."""
        server = self.server
        if self.offline:
            return "its node is offline: requests wait until its supervisor is back"
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

    @cached_property
    def on_demand(self) -> str:
        """The on-demand options in words, with the idle clock while it runs unused."""
        profile, server = self.profile, self.server
        parts = ["Starts on first request"] if profile.on_demand else []
        if profile.keep_running:
            parts.append("kept running")
        if profile.idle_minutes is not None:
            since = server.idle_since if self.is_up else None
            if self.is_up and server.in_flight > 0:
                parts.append(f"answering {server.in_flight} request{'s' if server.in_flight != 1 else ''}")
            elif since is not None:
                idle = max(int((timezone.now() - since).total_seconds()), 0)
                left = max(profile.idle_minutes * 60 - idle, 0)
                parts.append(f"idle for {idle // 60} min, stops in {math.ceil(left / 60)} min")
            else:
                parts.append(f"stops after {profile.idle_minutes} min idle")
        return " · ".join(parts)

    @cached_property
    def can_stop(self) -> bool:
        server = self.server
        return not (server.desired_state == DesiredState.STOPPED and server.state == ServerState.STOPPED)

    @cached_property
    def can_start(self) -> bool:
        server = self.server
        return server.desired_state == DesiredState.STOPPED or server.state in AT_REST


# Rendering 50 cards through the template engine was most of every poll, yet a card's HTML changes
# shape only when its state, buttons or notes do. So each process keeps the HTML of the cards it
# rendered, keyed by everything the card shows except its live figures (PID, uptime, memory, CPU,
# health, restarts, sparklines: a probe or a sample changes some of them every few seconds) and the
# CSRF token (different for every response): those are rendered as slots and put in at every poll.
TEXT_FIGURES = ("pid", "uptime", "rss", "cpu", "health", "restarts")  # each in an element of its own
SPARK_FIGURES = ("memory_points", "cpu_points", "peak")  # drawn again once a minute
LIVE_FIGURES = TEXT_FIGURES + SPARK_FIGURES
_LIVE_SET = frozenset(LIVE_FIGURES)
_SLOT_MARK = f"card-slot-{secrets.token_hex(8)}-"  # random, so no profile name or model can look like one
_SLOT = re.compile(re.escape(_SLOT_MARK) + r"(\w+);")
OOB = ' hx-swap-oob="true"'  # on a card sent out of band (the slot card_oob)


def _slot(name: str) -> str:
    return f"{_SLOT_MARK}{name};"


class CardParts(NamedTuple):
    """A card's HTML cut at its slots, [html, slot name, html, ..., html], and a digest of it (the
    same in every process for the same card shape: the slots' random mark is cut out)."""

    parts: list[str]
    digest: str


_CARD_PARTS: dict[tuple[Any, ...], CardParts] = {}
_CARD_PARTS_MAX = 2000


_live_of = itemgetter(*LIVE_FIGURES)
_text_figures_of = itemgetter(*TEXT_FIGURES)
_spark_figures_of = itemgetter(*SPARK_FIGURES)


def _digest(*values: str) -> str:
    """48 bits in 8 URL-safe characters: the page sends one per card shape and figures."""
    digest = hashlib.blake2b("\x1f".join(values).encode(), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _card_key(card: Card, back_url: str, operable: bool, gateway: str) -> tuple[Any, ...]:
    text = card.text
    shown = (
        card.failure,
        card.pending,
        card.loading,
        card.can_start,
        card.can_stop,
        card.note,
        card.note_level,
        card.model_missing,
        card.node.name if card.model_missing and card.node else "",  # the download-again form names it
        operable,
        card.on_demand,
    )
    shape = tuple(value for name, value in text.items() if name not in _LIVE_SET)
    # A live figure's presence can change the card's shape ({% if t.memory_points %}): keyed by that.
    present = tuple(map(bool, _live_of(text)))
    extras = tuple((extra.template, *extra.data.items()) for extra in card.extras)
    return (card.profile.pk, back_url, gateway, shape, present, shown, extras)


def _card_parts(card: Card, *, back_url: str, user: Any, gateway: str) -> CardParts:
    """The card rendered once with a slot in place of each live figure (and of the CSRF token and
    the out-of-band marker), split at the slots."""
    slotted = {**card.text, **{name: _slot(name) for name in LIVE_FIGURES if card.text[name]}}
    context = {
        "card": card,
        "shown": slotted,
        "back_url": back_url,
        "csrf_token": _slot("csrf"),
        "card_oob": _slot("card_oob"),
        "user": user,
        "gateway_url": gateway,
    }
    parts = _SLOT.split(render_to_string("servers/_card.html", context))
    return CardParts(parts, _digest(*parts))


@dataclass(frozen=True)
class RenderedCard:
    """A card ready to be sent: its cached parts and its figures, and the version a page showing
    it holds: one digest of its shape and sparklines, one of its other figures."""

    pk: int
    parts: CardParts
    text: dict[str, Any]

    @cached_property
    def shape(self) -> str:
        return _digest(self.parts.digest, *_spark_figures_of(self.text))

    @cached_property
    def figures(self) -> str:
        return _digest(*_text_figures_of(self.text))

    def html(self, token: str, *, oob: bool = False) -> str:
        """The whole card; `oob` marks it for htmx to put in place of the one with its id."""
        parts, text = self.parts.parts, self.text
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            name = parts[i]
            if name == "csrf":
                out.append(token)
            elif name == "card_oob":
                out.append(OOB if oob else "")
            else:
                out.append(html.escape(text[name]))
            out.append(parts[i + 1])
        return "".join(out)

    def figures_html(self) -> str:
        """Only the figures, each into its element on the card the page shows (htmx out of band)."""
        return "".join(
            f'<span id="server-card-{self.pk}-{name}" hx-swap-oob="innerHTML">{html.escape(self.text[name])}</span>'
            for name in TEXT_FIGURES
        )


def render_cards(cards: Sequence[Card], *, request: HttpRequest, back_url: str) -> list[RenderedCard]:
    """The cards as `servers/_card.html` renders them, each rendered again only when its shape changed."""
    user, gateway = request.user, gateway_base_url(request)
    rendered: list[RenderedCard] = []
    operable_by_owner: dict[int | None, bool] = {}  # the answer depends only on the owner (a few of them)
    for card in cards:
        owner = card.profile.owner_id
        if owner not in operable_by_owner:
            operable_by_owner[owner] = isinstance(user, User) and server_can_operate(user=user, profile=card.profile)
        operable = operable_by_owner[owner]
        key = _card_key(card, back_url, operable, gateway)  # Stop/Restart are shown only to who may use them
        parts = _CARD_PARTS.get(key)
        if parts is None:
            parts = _card_parts(card, back_url=back_url, user=user, gateway=gateway)
            if len(_CARD_PARTS) >= _CARD_PARTS_MAX:
                _CARD_PARTS.clear()
            _CARD_PARTS[key] = parts
        rendered.append(RenderedCard(card.profile.pk, parts, card.text))
    return rendered


def cards_html(cards: Sequence[RenderedCard], *, token: str) -> SafeString:
    # Safe: the literal parts came out of the template engine, the figures are escaped.
    return mark_safe("".join(card.html(token) for card in cards))


# --- What a poll sends when the page already shows the dashboard ---
#
# The page sends back the version its last answer gave (`live_version`): a digest of the frame (the
# node groups, their cards in order, the poll interval, the CSRF secret), and per card the digests of its shape and
# of its figures. When the frame is the same, the answer is out-of-band swaps only (htmx): each
# node's banner and memory bar, the cards whose shape changed, the figures of those whose figures
# alone changed, and the new version. A page open on 50 cards with 20 running receives a few kB
# instead of 175 kB, and its buttons, focus and "Copied" marks are left alone between changes.

# The version travels in the poll's URL: gunicorn takes request lines of up to 8190 bytes
# (limit_request_line, gunicorn.conf.py), some 330 cards. A longer one is not sent: such a page
# gets the whole live part at every poll.
VERSION_MAX_LENGTH = 7_500
_DIGEST = r"[A-Za-z0-9_-]{8}"
_ENTRY = re.compile(rf"(\d{{1,18}})~({_DIGEST})~({_DIGEST})")
_FRAME = re.compile(_DIGEST)


class ShownVersion(NamedTuple):
    frame: str
    cards: dict[int, tuple[str, str]]  # pk -> (shape, figures)


def live_version(frame: str, cards: Sequence[RenderedCard]) -> str:
    """`frame.pk~shape~figures.pk~shape~figures...`: characters a URL carries as they are."""
    version = ".".join([frame, *(f"{card.pk}~{card.shape}~{card.figures}" for card in cards)])
    return version if len(version) <= VERSION_MAX_LENGTH else ""


def parse_version(value: str) -> ShownVersion | None:
    """What the page says it shows; None when it says nothing readable (it then gets everything)."""
    if not value or len(value) > VERSION_MAX_LENGTH:
        return None
    frame, *entries = value.split(".")
    cards: dict[int, tuple[str, str]] = {}
    for entry in entries:
        found = _ENTRY.fullmatch(entry)
        if found is None:
            return None
        cards[int(found[1])] = (found[2], found[3])
    return ShownVersion(frame, cards) if _FRAME.fullmatch(frame) else None


def frame_digest(dash: Dashboard, *, csrf_secret: str) -> str:
    """Everything of the live part that the out-of-band answer does not send again, and the CSRF
    secret the cards' forms carry (a new one, after signing in again, needs the cards again)."""
    groups = tuple(
        (group.node.pk, group.node.name, group.status.running, [card.profile.pk for card in group.cards])
        for group in dash.groups
    )
    return _digest(repr((dash.poll_seconds, groups)), csrf_secret)


def changed_cards_html(cards: Sequence[RenderedCard], shown: ShownVersion, *, token: str) -> SafeString:
    """The cards whose shape changed since `shown`, whole; of the others, the figures that changed."""
    out: list[str] = []
    for card in cards:
        shape, figures = shown.cards.get(card.pk, ("", ""))
        if shape != card.shape:
            out.append(card.html(token, oob=True))
        elif figures != card.figures:
            out.append(card.figures_html())
    # Safe: as in cards_html.
    return mark_safe("".join(out))


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
