"""The dashboard card's view model: what one server's card shows, in words and figures, formatted
once in Python (servers/dashboard/render.py renders it with `servers/_card.html`).

Apps above servers add sections to the cards through the `cards_shown` signal
(servers/signals.py): `card_extras` sends it and collects their answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, cast

from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property

from core.formatting import human_bytes
from library.local import is_valid_repo_id, local_model_path
from nodes.models import Node
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerState
from servers.signals import cards_shown
from servers.states import AT_REST, FAILED, TRANSIENT, UP
from servers.templatetags.servers_extras import duration

UNKNOWN = "unknown"  # the state shown for a server whose node is offline
STATE_LABELS = dict(ServerState.choices)  # get_state_display() costs more, 50 times a poll


@dataclass(frozen=True)
class CardExtra:
    """A section another app adds to the cards: its template, rendered with `data`."""

    template: str
    data: dict[str, Any]


def card_extras(profiles: Sequence[ServerProfile]) -> dict[int, list[CardExtra]]:
    """The sections the apps above add to these profiles' cards: each receiver of `cards_shown`
    (gateway/receivers.py) answers profile pk -> its section, in one query."""
    found: dict[int, list[CardExtra]] = {}
    if not profiles:
        return found
    for _receiver, answer in cards_shown.send(sender=Card, profiles=profiles):
        for pk, extra in cast(dict[int, CardExtra], answer).items():
            found.setdefault(pk, []).append(extra)
    return found


class Sparklines(NamedTuple):
    """What a card draws of its server's last hour: the lines' points (empty when too few minutes
    were sampled to draw one) and the memory peak. Small, so the per-minute cache is cheap to read."""

    memory_points: str = ""
    cpu_points: str = ""
    memory_peak: float | None = None


NO_SPARKLINES = Sparklines()


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
