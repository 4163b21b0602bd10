"""Is a node's supervisor running? One answer for the dashboard, the System page and the API.

Running means its heartbeat is fresher than MLXM_HEARTBEAT_STALE seconds and it has not said it
stopped (a clean stop writes `stopped_at`, so the answer changes at once, not after the timeout).
A node whose supervisor is not running is "offline": nobody watches its servers, so their state
is unknown rather than stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from nodes.models import Node
from nodes.selectors import this_node


@dataclass(frozen=True)
class SupervisorStatus:
    node: Node
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
        """It has never run on that node."""
        return self.beat_at is None

    @property
    def stale(self) -> bool:
        """Not running (crashed, killed or stopped): what the dashboard's banner warns about."""
        return not self.running

    @property
    def offline(self) -> bool:
        return not self.running

    @property
    def states_unknown(self) -> bool:
        """Its servers' recorded states may be wrong: the supervisor went away without stopping
        them (crashed, killed, or its Mac is off or unreachable). After a clean stop, or before it
        ever ran, nothing runs there and the records say so."""
        return not self.running and not self.missing and not self.node.stopped_cleanly()

    @property
    def heartbeat_seconds(self) -> int | None:
        return int(self.heartbeat_age.total_seconds()) if self.heartbeat_age is not None else None


def node_status(node: Node, *, now: datetime) -> SupervisorStatus:
    if node.heartbeat_at is None:
        return SupervisorStatus(node, False, None, "", None, None, None, None, None, "It has never run here.")
    age = now - node.heartbeat_at
    if node.stopped_cleanly():
        reason = "It stopped cleanly."
    elif node.heartbeat_stale(now):
        reason = "Its heartbeat is stale: it has probably crashed or been killed."
    else:
        reason = ""
    running = node.is_online(now)
    return SupervisorStatus(
        node=node,
        running=running,
        pid=node.pid,
        hostname=node.hostname,
        started_at=node.started_at,
        beat_at=node.heartbeat_at,
        stopped_at=node.stopped_at,
        uptime=(now - node.started_at) if running and node.started_at else None,
        heartbeat_age=age,
        reason=reason,
    )


def supervisor_status(*, node: Node | None = None, now: datetime | None = None) -> SupervisorStatus:
    """The supervisor of `node` (default: this machine's)."""
    return node_status(node or this_node(), now=now or timezone.now())


def node_statuses(*, now: datetime | None = None) -> list[SupervisorStatus]:
    """Every node's supervisor, this machine's first, then by name: one query (two the first
    time, to make this machine's row)."""
    now = now or timezone.now()
    nodes = list(Node.objects.order_by("name"))
    local = next((node for node in nodes if node.is_local), None) or this_node()
    others = [node for node in nodes if node.pk != local.pk]
    return [node_status(node, now=now) for node in [local, *others]]
