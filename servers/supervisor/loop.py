"""The reconcile loop: at every tick compare what each server should be with what it is, and act.

Level-triggered like supervisord or a Kubernetes controller: a lost wake-up or a restart of this
process costs nothing, the next tick sees the same desired state and does the same thing. The
supervisor writes only its own columns of `Server`. Here: the shell (start, tick, the full and
the due passes, shutdown) and what spans servers (making room). One server's own reconcile is
`managed.Managed`, eviction's rules `eviction.py`, the bookkeeping `upkeep.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import QuerySet

from core.memory import for_models
from nodes.models import Node
from nodes.selectors import this_node
from nodes.services import node_beat, node_register, node_stop
from nodes.versions import node_versions
from profiles.argv import build_server_argv
from profiles.models import ServerProfile
from servers.models import DesiredState, Server
from servers.signals import sampled
from servers.states import PROBED, UP, State
from servers.supervisor import checks, eviction, upkeep
from servers.supervisor.host import Host
from servers.supervisor.managed import ArgvBuilder, Managed
from servers.supervisor.policy import Policy, on_grid, start_timeout, utc
from servers.supervisor.transitions import server_note

log = logging.getLogger("mlxmanager.supervisor")

# What a database that went away (stopped, restarted, unreachable) raises: the first query on a
# dead connection gives OperationalError, the next ones InterfaceError.
DATABASE_AWAY = (OperationalError, InterfaceError)
EXIT_POLL = 0.1  # seconds between checks that a process being stopped has gone


class Supervisor:
    def __init__(
        self,
        *,
        host: Host,
        policy: Policy | None = None,
        argv_builder: ArgvBuilder = build_server_argv,
        downloads: Any = None,
    ) -> None:
        self.host = host
        self.policy = policy or Policy.from_settings()
        self.argv_builder = argv_builder
        self.downloads = downloads
        self.runtimes: dict[int, Managed] = {}  # by server id: each server's state between ticks
        self.shutting_down = False
        self.next_sample = 0.0
        self.next_prune = 0.0
        self.next_cache_size = 0.0
        self.next_heartbeat = 0.0
        self.healthy: list[Server] = []  # probed fine this tick, not yet saved
        # This node's rows as the last full pass read them, kept current by this supervisor's own
        # writes: the quick passes between two full passes use them instead of reading them again.
        self.rows: dict[int, Server] = {}
        self.next_full = 0.0  # when the next pass over every server is due (a wake-up also asks for one)
        # Called from a probe's thread when its answer is in: the daemon makes it wake the loop.
        self.notify: Callable[[], None] = lambda: None
        self._node: Node | None = None  # this machine's row, read at `begin` (the database may be away now)

    @property
    def node(self) -> Node:
        """This machine: its servers and downloads are the only ones this supervisor touches."""
        if self._node is None:
            self._node = this_node()
        return self._node

    # --- lifecycle ---

    def begin(self) -> None:
        """At supervisor start: register this node, adopt what still runs, ask for auto-starts."""
        total, available = self.host.memory()
        self._node = node_register(
            name=settings.MLXM_NODE_NAME,
            url=settings.MLXM_NODE_URL,
            now=utc(self.host.time()),
            memory_total=total,
            memory_available=available,
            memory_for_models=for_models(total).bytes,
            versions=node_versions(),
        )
        self.adopt_all()
        self.request_auto_starts()

    def end(self) -> None:
        """After a clean shutdown: say so, so the web side need not wait for the beat to go stale."""
        node_stop(node=self.node, now=utc(self.host.time()))

    def beat(self, now: float, *, memory_available: int | None = None) -> None:
        """Tell the web side this supervisor is alive: when a beat is due, and always with a memory
        figure just sampled (which the beat carries); either way the next is due an interval later."""
        if now >= self.next_heartbeat or memory_available is not None:
            node_beat(node=self.node, now=utc(now), memory_available=memory_available)
            self.next_heartbeat = now + self.policy.heartbeat_interval

    def servers(self) -> QuerySet[Server]:
        """This node's servers: another node's supervisor owns the rest, even when it is away."""
        return Server.objects.filter(profile__node=self.node).select_related("profile")

    def managed(self, server: Server) -> Managed:
        """The managed server of this row (made at first sight), holding this row from now on."""
        managed = self.runtimes.get(server.pk)
        if managed is None:
            managed = self.runtimes[server.pk] = Managed(owner=self, server=server)
        managed.server = server
        return managed

    def adopt_all(self) -> None:
        for server in self.servers():
            self.adopt(server)

    def adopt(self, server: Server) -> None:
        """Take over a server a previous supervisor left behind, or clear what is gone."""
        self.managed(server).adopt()

    def request_auto_starts(self) -> None:
        """Auto-start profiles want to run whenever the supervisor starts."""
        for profile in ServerProfile.objects.filter(auto_start=True, node=self.node):
            server, _ = Server.objects.get_or_create(profile=profile)
            if server.desired_state != DesiredState.RUNNING:
                Server.objects.filter(pk=server.pk).update(desired_state=DesiredState.RUNNING)
                server_note(server, cause="auto-start", message="Auto-start profile: starting with the supervisor.")

    def start_timeout(self, profile: ServerProfile) -> float:
        """The profile's own start timeout, or one scaled by the size of the model's weights."""
        return start_timeout(profile, self.policy)

    # --- the passes ---

    def tick(self, *, full: bool = True) -> None:
        """One pass. Full (on a wake-up, or on the idle grid): reconcile every server, end
        processes of deleted profiles, sample. Otherwise only the servers with something of their
        own due (a starting one's fast probe, a probe's answer, a stop under way). Both beat."""
        now = self.host.time()
        if not full and now < self.next_full:
            self._tick_due(now)
            return
        self.next_full = on_grid(now, self.policy.idle_interval)
        self.rows = {}
        for fresh in self.servers():
            # Held already when another server's reconcile wrote it meanwhile (making room).
            server = self.rows.setdefault(fresh.pk, fresh)
            try:
                self.reconcile(server)
            except DATABASE_AWAY:
                raise  # not this server's fault: the daemon waits for the database (daemon.Outage)
            except Exception:
                log.exception("reconciling %s failed", server.profile.name)
        self._save_health()
        for pk in list(self.runtimes.keys() - self.rows.keys()):
            if self.runtimes[pk].end_deleted():  # its profile was deleted
                del self.runtimes[pk]
        now = self.host.time()
        if now >= self.next_sample:
            self.next_sample = on_grid(now, self.policy.sample_interval)
            self.sample(now, self.rows)  # beats too, with the memory it measured
        self.beat(now)
        if self.downloads is not None and not self.shutting_down:
            try:
                self.downloads.tick()
            except DATABASE_AWAY:
                raise
            except Exception:
                log.exception("the download runner failed")

    def _tick_due(self, now: float) -> None:
        """Reconcile only the servers whose own work is due; the others wait for the full pass.
        They are reconciled on the rows the last full pass read: whatever the web side changes
        comes with a wake-up, which asks for a full pass, so a probe's answer costs no read."""
        due = {pk for pk, managed in self.runtimes.items() if _own_work_due(managed, now)}
        if due:
            self._hold_rows(due - self.rows.keys())
            for pk in [pk for pk in self.rows if pk in due]:
                server = self.rows[pk]  # looked up now: making room for one may have replaced another
                try:
                    self.reconcile(server)
                except Exception:
                    log.exception("reconciling %s failed", server.profile.name)
            self._save_health()
        self.beat(self.host.time())

    def _hold_rows(self, pks: set[int]) -> None:
        """Read the rows of `pks` that no full pass has read yet (a deleted profile's are not found)."""
        if pks:
            self.rows.update((server.pk, server) for server in self.servers().filter(pk__in=pks))

    def reconcile(self, server: Server) -> None:
        self.managed(server).reconcile()

    def _save_health(self) -> None:
        upkeep.save_columns(self.healthy, upkeep.HEALTH_COLUMNS)
        self.healthy = []

    def answered(self, _future: Future[Any]) -> None:
        self.notify()

    def seconds_until_next(self) -> float:
        """How long the loop may sleep before something is due (a wake-up cuts it short)."""
        now = self.host.time()
        due = [self.next_sample, self.next_full]
        for managed in self.runtimes.values():
            due.extend(_due_times(managed, now))
        return max(0.0, min(due) - now)

    def begin_shutdown(self) -> None:
        """Stop every server gracefully; desired states stay as they are, so they come back."""
        self.shutting_down = True

    def busy(self) -> bool:
        """True while some process is still owned (a shutdown waits for this to turn False)."""
        return any(managed.process is not None for managed in self.runtimes.values())

    # --- making room ---

    def making_room(self, managed: Managed) -> bool:
        """For an on-demand start that does not fit: stop idle on-demand servers, least recently
        used first, until it would. True while it must wait for them to exit; False to start now
        (it fits, or nothing may be stopped: the precheck then refuses it with the numbers)."""
        server = managed.server
        if not server.started_on_demand:
            return False
        if any(
            (other := self.runtimes.get(pk)) is not None and other.process is not None for pk in managed.making_room
        ):
            return True
        managed.making_room.clear()
        short = checks.memory_shortfall(server.profile, self.host, headroom=self.policy.memory_headroom)
        if short <= 0:
            return False
        rows = {row.pk: row for row in self._room_candidates(server)}
        pool = [_candidate(row) for row in rows.values()]
        freed = 0
        while picked := eviction.victims(short - freed, pool):
            for victim in picked:
                if self._stop_for_room(rows[victim.pk], server):
                    managed.making_room.add(victim.pk)
                    freed += victim.memory
            pool = [c for c in pool if c not in picked]
        return bool(managed.making_room)

    def _room_candidates(self, server: Server) -> QuerySet[Server]:
        """Idle on-demand servers of this node a request started, not kept running (stopping
        another node's server frees nothing here)."""
        return (
            self.servers()
            .filter(
                state__in=[s.value for s in UP],
                desired_state=DesiredState.RUNNING,
                started_on_demand=True,
                in_flight=0,
                profile__on_demand=True,
                profile__keep_running=False,
            )
            .exclude(pk=server.pk)
        )

    def _stop_for_room(self, victim: Server, server: Server) -> bool:
        stopped = Server.objects.filter(pk=victim.pk, desired_state=DesiredState.RUNNING, in_flight=0).update(
            desired_state=DesiredState.STOPPED
        )
        if not stopped:
            return False
        victim.desired_state = DesiredState.STOPPED
        self.rows[victim.pk] = victim  # read just now and written here: the row to use from now on
        message = f"Stopped to make room for {server.profile.name}."
        self.managed(victim).stop(restart=False, cause="room", message=message)
        return True

    # --- upkeep ---

    def measure_hub_cache(self) -> None:
        upkeep.hub_cache_publish(node=self.node, host=self.host, at=utc(self.host.time()))

    def sample(self, now: float, servers: Mapping[int, Server]) -> None:
        """Memory and CPU of each of `servers` that runs and of the system, in one transaction;
        and the heartbeat, with the memory available. The hub cache and pruning when due."""
        at = utc(now)
        processes = {pk: m.process for pk, m in self.runtimes.items() if pk in servers and m.process is not None}
        usages = upkeep.usages_measure(self.host, processes)
        with transaction.atomic():
            available = upkeep.samples_write(node=self.node, host=self.host, at=at, usages=usages, servers=servers)
            self.beat(now, memory_available=available)
        upkeep.logs_rotate((servers[pk].profile_id for pk in usages), self.policy)
        sampled.send(sender=Server, now=at)
        if now >= self.next_cache_size:
            self.next_cache_size = now + self.policy.cache_size_interval
            self.measure_hub_cache()
        if now >= self.next_prune:
            self.next_prune = now + 60
            self.prune(at)

    def prune(self, at: datetime) -> None:
        """Once a minute: samples past their retention, and the apps' clean-ups."""
        upkeep.samples_prune(node=self.node, cutoff=at - timedelta(seconds=self.policy.sample_retention), at=at)


def _own_work_due(managed: Managed, now: float) -> bool:
    if managed.kill_at is not None or any(f is not None and f.done() for f in (managed.probe, managed.readiness)):
        return True
    if managed.making_room:  # starts once those it stops have gone (an adopted one's exit wakes nobody)
        return True
    if managed.state == State.STARTING and now >= managed.start_deadline:
        return True
    if managed.state == State.BACKOFF:
        return now >= managed.backoff_until
    return (
        managed.process is not None and managed.state in PROBED and managed.probe is None and now >= managed.next_probe
    )


def _due_times(managed: Managed, now: float) -> list[float]:
    """When this server's own work is next due (the loop sleeps until the first of all)."""
    due: list[float] = []
    if managed.kill_at is not None:
        # Our own children's exit wakes the loop (SIGCHLD); an adopted one is polled.
        due.extend([managed.kill_at, now + EXIT_POLL])
    elif any(f is not None and f.done() for f in (managed.probe, managed.readiness)):
        due.append(now)
    elif managed.process is not None and managed.state in PROBED and managed.probe is None:
        # A probe under way is not waited for: its answer calls `notify`.
        due.append(managed.next_probe)
    if managed.making_room:
        due.append(now + EXIT_POLL)
    if managed.backoff_until > now:
        due.append(managed.backoff_until)
    if managed.start_deadline > now:
        due.append(managed.start_deadline)
    return due


def _candidate(server: Server) -> eviction.Candidate:
    last_use = server.last_used_at or server.state_changed_at or datetime.min.replace(tzinfo=UTC)
    return eviction.Candidate(pk=server.pk, memory=server.rss_bytes or 0, last_use=last_use)
