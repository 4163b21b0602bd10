"""The reconcile loop: at every tick compare what each server should be with what it is, and act.

Level-triggered like supervisord or a Kubernetes controller: a lost wake-up or a restart of this
process costs nothing, the next tick sees the same desired state and does the same thing. The
supervisor writes only its own columns of `Server`; every state change goes through
`transitions.transition`; every OS call goes through `self.host` (a fake one in the tests).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, QuerySet

from core.memory import for_models
from nodes.models import Node
from nodes.selectors import this_node
from nodes.services import node_beat, node_register, node_stop
from nodes.versions import node_versions
from profiles.argv import build_server_argv, one_line
from profiles.modelinfo import default_start_timeout
from profiles.models import ServerProfile
from servers.addresses import listen_address
from servers.logs import server_log_path
from servers.models import DesiredState, Server
from servers.states import PROBED, UP, WITH_PROCESS, State
from servers.supervisor import checks, eviction, logfile, upkeep
from servers.supervisor.host import HealthAnswer, Host, Process
from servers.supervisor.policy import KILLED_FROM_OUTSIDE, KillReason, Policy, describe_exit, on_grid, refusal_message
from servers.supervisor.transitions import save_fields, server_note, transition

log = logging.getLogger("mlxmanager.supervisor")

ArgvBuilder = Callable[[ServerProfile], list[str]]
# What a database that went away (stopped, restarted, unreachable) raises: the first query on a
# dead connection gives OperationalError, the next ones InterfaceError.
DATABASE_AWAY = (OperationalError, InterfaceError)
EXIT_POLL = 0.1  # seconds between checks that a process being stopped has gone


@dataclass
class Runtime:
    """What the supervisor keeps in memory about one server between ticks."""

    process: Process | None = None
    start_deadline: float = 0.0
    next_probe: float = 0.0
    kill_at: float | None = None  # SIGKILL is due then (a stop or a forced restart is under way)
    killing_for: KillReason = KillReason.NONE  # while a forced end is under way
    kill_message: str = ""  # with FAILED: what went wrong, for the event once the process has gone
    log_start: int = 0  # bytes of the log written before this process started
    log_scanned: int = 0  # how far the log has been searched for a failed load
    readiness: Future[str | None] | None = None  # the one-token generation, once /health has answered
    probe: Future[HealthAnswer] | None = None  # the GET /health sent and not yet applied (one at a time)
    failures: list[float] = field(default_factory=list)  # crash times of a server that was running
    failed_starts: list[str] = field(default_factory=list)  # why each consecutive start failed
    backoff_until: float = 0.0
    restart_pending: bool = False  # a stop that is the first half of a restart
    making_room: set[int] = field(default_factory=set)  # servers being stopped so that this one fits
    state: State = State.STOPPED  # as of the end of the last reconcile


def _candidate(server: Server) -> eviction.Candidate:
    last_use = server.last_used_at or server.state_changed_at or datetime.min.replace(tzinfo=UTC)
    return eviction.Candidate(pk=server.pk, memory=server.rss_bytes or 0, last_use=last_use)


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def server_marker(server: Server) -> str:
    """What a model server carries in its environment to be found again: this manager's data
    folder (two managers on one machine never claim each other's) and the server's row."""
    return f"{settings.MLXM_DATA_DIR}#server-{server.pk}"


def fault_point(name: str) -> None:
    """Fault injection for the tests: MLXM_TEST_FAULT=<name> kills this process here, as kill -9 would."""
    if os.environ.get("MLXM_TEST_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
        self.runtimes: dict[int, Runtime] = {}
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
            now=_dt(self.host.time()),
            memory_total=total,
            memory_available=available,
            memory_for_models=for_models(total).bytes,
            versions=node_versions(),
        )
        self.adopt_all()
        self.request_auto_starts()

    def end(self) -> None:
        """After a clean shutdown: say so, so the web side need not wait for the beat to go stale."""
        node_stop(node=self.node, now=_dt(self.host.time()))

    def beat(self, now: float, *, memory_available: int | None = None) -> None:
        """Tell the web side this supervisor is alive: when a beat is due, and always with a memory
        figure just sampled (which the beat carries); either way the next is due an interval later."""
        if now >= self.next_heartbeat or memory_available is not None:
            node_beat(node=self.node, now=_dt(now), memory_available=memory_available)
            self.next_heartbeat = now + self.policy.heartbeat_interval

    def servers(self) -> QuerySet[Server]:
        """This node's servers: another node's supervisor owns the rest, even when it is away."""
        return Server.objects.filter(profile__node=self.node).select_related("profile")

    def adopt_all(self) -> None:
        for server in self.servers():
            self.adopt(server)

    def adopt(self, server: Server) -> None:
        """Take over a server a previous supervisor left behind, or clear what is gone."""
        rt = self.runtimes.setdefault(server.pk, Runtime())
        now = self.host.time()
        state = State(server.state)
        process = None
        if server.pid:
            process = self.host.find(server.pid, create_time=server.process_started_at, cmdline=server.cmdline)
            if process is None:
                server_note(
                    server,
                    cause="supervisor",
                    message=f"PID {server.pid} is gone or now belongs to another program; cleared.",
                )
                save_fields(server, pid=None, process_started_at=None)
            else:
                server_note(server, cause="supervisor", message=f"Adopted the running process (PID {server.pid}).")
        if process is None and state == State.STARTING:
            process = self._find_unrecorded(server)
        if process is not None and state not in WITH_PROCESS:
            # Recorded as not running, yet alive: end it rather than leave a stray copy.
            rt.process = process
            self._kill(server, rt, reason=KillReason.ORPHAN)
            return
        if process is not None:
            rt.process = process
            rt.next_probe = now
            if state == State.STARTING:
                rt.start_deadline = now + self.start_timeout(server.profile)
                rt.log_start = rt.log_scanned = logfile.size(server_log_path(server.profile.pk))
            elif state == State.STOPPING:
                self.host.signal(process, signal.SIGTERM)
                rt.kill_at = now + self.policy.stop_timeout
            return
        if state in PROBED:
            transition(
                server,
                State.BACKOFF,
                cause="exit",
                message="The process ended while the supervisor was not running; starting it again.",
                backoff_until=_dt(now),
            )
            rt.backoff_until = now
        elif state == State.STOPPING:
            transition(server, State.STOPPED, cause="exit", message="The process ended while the supervisor was away.")
        elif state == State.BACKOFF:
            rt.backoff_until = server.backoff_until.timestamp() if server.backoff_until else now

    def _find_unrecorded(self, server: Server) -> Process | None:
        """A process spawned for `server` whose PID was never saved: the previous supervisor died
        between spawn and save. Found by the marker in its environment; recorded, so it is adopted."""
        process = self.host.find_marked(server_marker(server))
        if process is None:
            return None
        argv = process.cmdline()
        port = int(argv[argv.index("--port") + 1]) if "--port" in argv[:-1] else server.profile.port
        save_fields(server, pid=process.pid, process_started_at=process.create_time, cmdline=argv, port=port)
        server_note(
            server,
            cause="supervisor",
            message=f"Found PID {process.pid}, started just before the previous supervisor stopped; adopted it.",
        )
        return process

    def request_auto_starts(self) -> None:
        """Auto-start profiles want to run whenever the supervisor starts."""
        for profile in ServerProfile.objects.filter(auto_start=True, node=self.node):
            server, _ = Server.objects.get_or_create(profile=profile)
            if server.desired_state != DesiredState.RUNNING:
                Server.objects.filter(pk=server.pk).update(desired_state=DesiredState.RUNNING)
                server_note(server, cause="auto-start", message="Auto-start profile: starting with the supervisor.")

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
            self._forget_deleted(pk)
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
        due = {pk for pk, rt in self.runtimes.items() if self._own_work_due(rt, now)}
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

    def _own_work_due(self, rt: Runtime, now: float) -> bool:
        if rt.kill_at is not None or any(f is not None and f.done() for f in (rt.probe, rt.readiness)):
            return True
        if rt.making_room:  # starts once those it stops have gone (an adopted one's exit wakes nobody)
            return True
        if rt.state == State.STARTING and now >= rt.start_deadline:
            return True
        if rt.state == State.BACKOFF:
            return now >= rt.backoff_until
        return rt.process is not None and rt.state in PROBED and rt.probe is None and now >= rt.next_probe

    def _save_health(self) -> None:
        upkeep.save_columns(self.healthy, upkeep.HEALTH_COLUMNS)
        self.healthy = []

    def seconds_until_next(self) -> float:
        """How long the loop may sleep before something is due (a wake-up cuts it short)."""
        now = self.host.time()
        due = [self.next_sample, self.next_full]
        for rt in self.runtimes.values():
            if rt.kill_at is not None:
                # Our own children's exit wakes the loop (SIGCHLD); an adopted one is polled.
                due.extend([rt.kill_at, now + EXIT_POLL])
            elif any(f is not None and f.done() for f in (rt.probe, rt.readiness)):
                due.append(now)
            elif rt.process is not None and rt.state in PROBED and rt.probe is None:
                # A probe under way is not waited for: its answer calls `notify`.
                due.append(rt.next_probe)
            if rt.making_room:
                due.append(now + EXIT_POLL)
            if rt.backoff_until > now:
                due.append(rt.backoff_until)
            if rt.start_deadline > now:
                due.append(rt.start_deadline)
        return max(0.0, min(due) - now)

    def begin_shutdown(self) -> None:
        """Stop every server gracefully; desired states stay as they are, so they come back."""
        self.shutting_down = True

    def busy(self) -> bool:
        """True while some process is still owned (a shutdown waits for this to turn False)."""
        return any(rt.process is not None for rt in self.runtimes.values())

    # --- one server ---

    def reconcile(self, server: Server) -> None:
        rt = self.runtimes.setdefault(server.pk, Runtime())
        if rt.process is not None and not rt.process.alive():
            self._on_exit(server, rt)
        state = State(server.state)
        want = server.desired_state == DesiredState.RUNNING and not self.shutting_down
        restart = server.restart_requested > server.restart_handled and not self.shutting_down
        if restart:
            save_fields(server, restart_handled=server.restart_requested)
        now = self.host.time()

        if state == State.STOPPED:
            if want and rt.process is None and self._making_room(server, rt):
                pass  # started once the servers stopped for it have gone
            elif want and rt.process is None:
                if not rt.restart_pending:
                    # A fresh start by the user: earlier crashes and failed starts no longer count.
                    rt.failures.clear()
                    rt.failed_starts.clear()
                self._start(server, rt, cause="user" if not rt.restart_pending else "restart")
            elif not want:
                rt.restart_pending = False  # stopped for good, not half of a restart
        elif state == State.STARTING:
            if not want or restart:
                self._stop(server, rt, restart=restart)
            elif rt.process is None:
                self._fail(server, rt, message="The process was lost while starting.", cause="exit", exit_code=None)
            elif rt.kill_at is None:
                self._watch_start(server, rt, now)
        elif state in UP:
            if not want or restart:
                self._stop(server, rt, restart=restart)
            elif not self._stop_if_idle(server, rt, now) and rt.kill_at is None:
                self._probe(server, rt, now)
        elif state == State.BACKOFF:
            if not want:
                message = "Stopped during backoff." if not self.shutting_down else "Supervisor shutting down."
                transition(
                    server,
                    State.STOPPED,
                    cause="user" if not self.shutting_down else "supervisor",
                    message=message,
                    backoff_until=None,
                )
            elif restart or now >= rt.backoff_until:
                self._start(server, rt, cause="restart" if restart else "backoff", restarting=True)
        elif state == State.FATAL:
            if restart:
                rt.failures.clear()
                rt.failed_starts.clear()
                self._start(server, rt, cause="user", restarting=True)
            elif server.desired_state == DesiredState.STOPPED:
                transition(server, State.STOPPED, cause="user", message="Stop requested.")
        elif state == State.STOPPING:
            self._push_stop(server, rt, now)
        if rt.kill_at is not None and rt.process is not None and now >= rt.kill_at:
            self.host.signal(rt.process, signal.SIGKILL)
            rt.kill_at = now + self.policy.stop_timeout
        rt.state = State(server.state)
        if rt.state not in PROBED:
            rt.probe = None  # an answer that came too late to matter would keep the loop awake

    def _start(self, server: Server, rt: Runtime, *, cause: str, restarting: bool = False) -> None:
        profile = server.profile
        now = self.host.time()
        restarting = restarting or rt.restart_pending
        rt.restart_pending = False
        fields: dict[str, Any] = {"backoff_until": None, "health_failures": 0}
        if restarting:
            fields["restart_count"] = F("restart_count") + 1
        message = "Restarting." if restarting else "Starting."
        transition(server, State.STARTING, cause=cause, message=message, at=_dt(now), **fields)
        server.refresh_from_db(fields=["restart_count"])
        refusal = checks.precheck(profile, self.host, headroom=self.policy.memory_headroom)
        if refusal:
            # No process ran: an exit code from an earlier run would only mislead.
            transition(server, State.FATAL, cause="precheck", message=refusal, last_error=refusal, last_exit_code=None)
            return
        try:
            argv = self.argv_builder(profile)
        except Exception as exc:
            error = f"Could not build the server's command line from the profile: {exc}"
            transition(server, State.FATAL, cause="precheck", message=error, last_error=error, last_exit_code=None)
            return
        log_path = server_log_path(profile.pk)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile.rotate_if_large(log_path, max_bytes=self.policy.log_max_bytes, backups=self.policy.log_backups)
        logfile.append_line(log_path, f"=== {_dt(now):%Y-%m-%d %H:%M:%S} UTC: {one_line(argv)}")
        rt.log_start = rt.log_scanned = logfile.size(log_path)
        try:
            process = self.host.spawn(argv, log_path=log_path, marker=server_marker(server))
        except OSError as exc:
            self._fail(server, rt, message=f"Could not start {argv[0]}: {exc}", cause="spawn", exit_code=None)
            return
        fault_point("after-spawn")
        rt.process = process
        rt.kill_at = None
        rt.killing_for = KillReason.NONE
        rt.start_deadline = now + self.start_timeout(profile)
        rt.next_probe = now
        rt.readiness = rt.probe = None
        save_fields(
            server,
            pid=process.pid,
            process_started_at=process.create_time,
            cmdline=list(argv),
            port=profile.port,
            started_at=_dt(now),
        )

    def start_timeout(self, profile: ServerProfile) -> float:
        """The profile's own start timeout, or one scaled by the size of the model's weights."""
        if profile.start_timeout:
            return float(profile.start_timeout)
        return default_start_timeout(profile.model, base=self.policy.start_timeout)

    def _watch_start(self, server: Server, rt: Runtime, now: float) -> None:
        """Starting -> running once GET /health has answered 200 and then a one-token generation
        has come back; a load that failed (503, or the log says so) ends the attempt at once."""
        if now >= rt.start_deadline:
            self._kill(server, rt, reason=KillReason.TIMEOUT)
            return
        answered = any(f is not None and f.done() for f in (rt.probe, rt.readiness))  # they call `notify`
        if rt.process is None or (now < rt.next_probe and not answered):
            return
        if self._log_says_load_failed(server, rt):
            self._end_failed_start(server, rt, "The model could not be loaded (mlx-lm's generation thread died).")
            return
        if rt.readiness is None:
            self._first_health(server, rt, now)
            if rt.readiness is None or not rt.readiness.done():
                return
        elif not rt.readiness.done():
            # Still loading: a slow watch for a load that fails (503) until the answer wakes us.
            answer = self._health(server, rt, now, next_at=now + self.policy.loading_probe_interval)
            if answer is not None and answer.refused:
                self._end_failed_start(server, rt, refusal_message(answer.status))
            return
        error = rt.readiness.result()
        rt.readiness = rt.probe = None
        if error:
            self._end_failed_start(server, rt, error)
            return
        rt.failed_starts.clear()
        rt.next_probe = on_grid(now, self.policy.health_interval)
        ready = self.host.time()  # when the answer that proved it was seen, not when the tick began
        since = ready - (server.started_at.timestamp() if server.started_at else ready)
        transition(
            server,
            State.RUNNING,
            cause="health",
            message=f"Answered a one-token generation {since:.1f} s after the start (GET /health answered first).",
            at=_dt(ready),
            health_failures=0,
            last_error="",
        )

    def _first_health(self, server: Server, rt: Runtime, now: float) -> None:
        """Until GET /health answers: then, the one-token generation goes out (in the background)."""
        answer = self._health(server, rt, now, next_at=now + self.policy.start_probe_interval)
        if answer is None or not answer.ok:
            if answer is not None and answer.refused:
                self._end_failed_start(server, rt, refusal_message(answer.status))
            return
        save_fields(server, last_health_at=_dt(now), last_health_ms=answer.ms)
        rt.next_probe = now + self.policy.loading_probe_interval
        address = listen_address(server)
        rt.readiness = self.host.generate_one(*address, timeout=max(rt.start_deadline - now, 1.0))
        rt.readiness.add_done_callback(self._answered)

    def _health(self, server: Server, rt: Runtime, now: float, *, next_at: float) -> HealthAnswer | None:
        """The answer to this server's GET /health once it is in, else None. Sent in the background
        when due (at `next_at` again after this one), one at a time per server, so a hung server
        holds one thread for its timeout and never the loop, another server's probe or the beat."""
        if rt.probe is None:
            if now < rt.next_probe:
                return None
            rt.next_probe = next_at
            rt.probe = self.host.health_soon(*listen_address(server), timeout=self.policy.health_timeout)
            rt.probe.add_done_callback(self._answered)
        if not rt.probe.done():
            return None
        answer, rt.probe = rt.probe.result(), None
        return answer

    def _answered(self, _future: Future[Any]) -> None:
        self.notify()

    def _log_says_load_failed(self, server: Server, rt: Runtime) -> bool:
        path = server_log_path(server.profile.pk)
        end = logfile.size(path)
        if end < rt.log_scanned:  # rotated meanwhile
            rt.log_start = rt.log_scanned = 0
        if end == rt.log_scanned:
            return False
        text = logfile.read_from(path, rt.log_scanned)
        rt.log_scanned = end
        return logfile.GENERATION_DIED in text

    def _end_failed_start(self, server: Server, rt: Runtime, message: str) -> None:
        """The process cannot serve: end it; its exit then records the failed start."""
        rt.readiness = None
        rt.kill_message = message
        self._kill(server, rt, reason=KillReason.FAILED)

    def _probe(self, server: Server, rt: Runtime, now: float) -> None:
        answer = self._health(server, rt, now, next_at=on_grid(now, self.policy.health_interval))
        if answer is None:
            return
        state = State(server.state)
        if answer.ok:
            if state == State.UNHEALTHY:
                transition(
                    server,
                    State.RUNNING,
                    cause="health",
                    message="GET /health answers 200 again.",
                    last_health_at=_dt(now),
                    last_health_ms=answer.ms,
                    health_failures=0,
                )
            else:
                # Routine good news: saved with the others of this tick in one query (`_save_health`).
                server.last_health_at, server.last_health_ms, server.health_failures = _dt(now), answer.ms, 0
                self.healthy.append(server)
            return
        if answer.refused:
            # mlx-lm answers 503 for ever once its generation thread has died: a crash, not a hiccup.
            rt.kill_message = refusal_message(answer.status)
            self._kill(server, rt, reason=KillReason.FAILED)
            return
        failures = server.health_failures + 1
        save_fields(server, health_failures=failures)
        if state == State.RUNNING and failures >= self.policy.unhealthy_after:
            transition(
                server, State.UNHEALTHY, cause="health", message=f"GET /health failed {failures} times in a row."
            )
        elif state == State.UNHEALTHY and failures >= self.policy.unhealthy_after + self.policy.restart_unhealthy_after:
            self._kill(server, rt, reason=KillReason.UNHEALTHY)

    def _kill(self, server: Server, rt: Runtime, *, reason: KillReason) -> None:
        """End the process without a state change yet; its exit then decides the next state."""
        if rt.process is None:
            return
        rt.probe = rt.readiness = None  # answers about a process being ended are not waited for
        rt.killing_for = reason
        self.host.signal(rt.process, signal.SIGTERM)
        rt.kill_at = self.host.time() + self.policy.stop_timeout

    def _making_room(self, server: Server, rt: Runtime) -> bool:
        """For an on-demand start that does not fit: stop idle on-demand servers, least recently
        used first, until it would. True while it must wait for them to exit; False to start now
        (it fits, or nothing may be stopped: the precheck then refuses it with the numbers)."""
        if not server.started_on_demand:
            return False
        if any(self.runtimes.get(pk, Runtime()).process is not None for pk in rt.making_room):
            return True
        rt.making_room.clear()
        short = checks.memory_shortfall(server.profile, self.host, headroom=self.policy.memory_headroom)
        if short <= 0:
            return False
        rows = {row.pk: row for row in self._room_candidates(server)}
        pool = [_candidate(row) for row in rows.values()]
        freed = 0
        while picked := eviction.victims(short - freed, pool):
            for victim in picked:
                if self._stop_for_room(rows[victim.pk], server):
                    rt.making_room.add(victim.pk)
                    freed += victim.memory
            pool = [c for c in pool if c not in picked]
        return bool(rt.making_room)

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
        self._stop(victim, self.runtimes.setdefault(victim.pk, Runtime()), restart=False, cause="room", message=message)
        return True

    def _release_stale_use(self, server: Server, now: float) -> None:
        """Count as ended the requests whose server has been unused for `in_flight_stale` (their
        worker died before counting them down). Conditional on the row as read, so a request that
        began or ended meanwhile keeps its count."""
        stale = eviction.use_stale(
            in_flight=server.in_flight,
            last_used_at=server.last_used_at,
            now=now,
            stale_after=self.policy.in_flight_stale,
        )
        if not stale:
            return
        released = Server.objects.filter(
            pk=server.pk, in_flight=server.in_flight, last_used_at=server.last_used_at
        ).update(in_flight=0)
        if released:
            count, server.in_flight = server.in_flight, 0
            minutes = round(self.policy.in_flight_stale / 60)
            message = f"{count} /v1/ request(s) unfinished after {minutes} min without use: taken as gone."
            server_note(server, cause="supervisor", message=message)

    def _stop_if_idle(self, server: Server, rt: Runtime, now: float) -> bool:
        """Stop a server unused for its idle time. The desired state turns `stopped` only if no
        request began meanwhile (one conditional UPDATE), so a request never loses its server."""
        self._release_stale_use(server, now)
        minutes = server.profile.idle_minutes
        if not eviction.idle_due(
            idle_since=server.idle_since, idle_minutes=minutes, minute=self.policy.idle_minute, now=now
        ):
            return False
        stopped = Server.objects.filter(
            pk=server.pk, desired_state=DesiredState.RUNNING, in_flight=0, last_used_at=server.last_used_at
        ).update(desired_state=DesiredState.STOPPED)
        if not stopped:
            return False
        server.desired_state = DesiredState.STOPPED
        self._stop(
            server,
            rt,
            restart=False,
            cause="idle",
            message=f"No /v1/ request for {minutes} min (Stop after {minutes} min idle); stopping.",
        )
        return True

    def _stop(self, server: Server, rt: Runtime, *, restart: bool, cause: str = "", message: str = "") -> None:
        rt.restart_pending = restart
        rt.killing_for = KillReason.NONE
        rt.probe = rt.readiness = None
        if not cause:
            cause, message = self._stop_reason(restart=restart)
        transition(server, State.STOPPING, cause=cause, message=message)
        if rt.process is not None:
            self.host.signal(rt.process, signal.SIGTERM)
            rt.kill_at = self.host.time() + self.policy.stop_timeout
        self._push_stop(server, rt, self.host.time())

    def _stop_reason(self, *, restart: bool) -> tuple[str, str]:
        if self.shutting_down:
            return "supervisor", "Supervisor shutting down; the server starts again with it."
        if restart:
            return "user", "Restart requested."
        return "user", "Stop requested."

    def _push_stop(self, server: Server, rt: Runtime, now: float) -> None:
        if rt.process is None:
            transition(server, State.STOPPED, cause="supervisor", message="Stopped.", pid=None, process_started_at=None)
            rt.kill_at = None
            if server.desired_state == DesiredState.RUNNING and not self.shutting_down:
                self._start(server, rt, cause="restart")

    def _on_exit(self, server: Server, rt: Runtime) -> None:
        assert rt.process is not None
        code = rt.process.exit_code()
        rt.process = None
        reason = rt.killing_for
        rt.kill_at = None
        rt.killing_for = KillReason.NONE
        rt.readiness = rt.probe = None
        save_fields(server, pid=None, process_started_at=None, last_exit_code=code, rss_bytes=None, cpu_percent=None)
        state = State(server.state)
        if state == State.STOPPING:
            transition(
                server, State.STOPPED, cause="supervisor", message=f"Stopped ({describe_exit(code)}).", exit_code=code
            )
            if server.desired_state == DesiredState.RUNNING and not self.shutting_down:
                self._start(server, rt, cause="restart")
            return
        if reason == KillReason.ORPHAN:
            return
        if reason == KillReason.TIMEOUT:
            timeout = self.start_timeout(server.profile)
            message, cause = f"Did not answer a one-token generation within {timeout:g} s; killed.", "timeout"
        elif reason == KillReason.FAILED:
            message, cause = f"{rt.kill_message} Stopped it ({describe_exit(code)}).", "health"
        elif reason == KillReason.UNHEALTHY:
            message, cause = f"Restarted after {server.health_failures} failed health checks.", "health"
        elif code == -signal.SIGKILL:
            message, cause = KILLED_FROM_OUTSIDE, "exit"
        else:
            message, cause = f"The process exited on its own ({describe_exit(code)}).", "exit"
        self._fail(server, rt, message=message, cause=cause, exit_code=code)

    def _fail(self, server: Server, rt: Runtime, *, message: str, cause: str, exit_code: int | None) -> None:
        """A crash or a failed start: back off with a growing delay, or `fatal` after too many
        (consecutive failed starts, however long each took; crashes of a running server within
        the failure window). The event and `last_error` carry the log's error lines."""
        now = self.host.time()
        errors = logfile.error_lines(logfile.read_from(server_log_path(server.profile.pk), rt.log_start))
        if errors:
            message = f"{message}\nFrom the log:\n{errors}"
        if State(server.state) == State.STARTING:
            rt.failed_starts.append(message)
            count = len(rt.failed_starts)
            give_up = count >= self.policy.fatal_after
            summary = f"Gave up after {count} failed starts in a row:\n" + "\n".join(
                f"{n}. {why}" for n, why in enumerate(rt.failed_starts, 1)
            )
        else:
            rt.failures = [t for t in rt.failures if now - t < self.policy.failure_window] + [now]
            count = len(rt.failures)
            give_up = count >= self.policy.fatal_after
            summary = f"{message}\nGave up after {count} crashes within {self.policy.failure_window:g} s."
        delay = self.policy.backoff_delay(count)
        rt.backoff_until = now + delay
        transition(
            server,
            State.BACKOFF,
            cause=cause,
            message=f"{message}\nTrying again in {delay:g} s.",
            exit_code=exit_code,
            backoff_until=_dt(rt.backoff_until),
            last_error=message,
        )
        if give_up:
            lines = logfile.tail(server_log_path(server.profile.pk))
            error = f"{summary}\nLast lines of the log:\n{lines}"
            transition(server, State.FATAL, cause=cause, message=error, backoff_until=None, last_error=error)

    def _forget_deleted(self, pk: int) -> None:
        """The profile was deleted: end its process, then forget it."""
        rt = self.runtimes[pk]
        if rt.process is None or not rt.process.alive():
            del self.runtimes[pk]
            return
        now = self.host.time()
        if rt.kill_at is None:
            self.host.signal(rt.process, signal.SIGTERM)
            rt.kill_at = now + self.policy.stop_timeout
        elif now >= rt.kill_at:
            self.host.signal(rt.process, signal.SIGKILL)
            rt.kill_at = now + self.policy.stop_timeout

    # --- samples ---

    def measure_hub_cache(self) -> None:
        upkeep.hub_cache_publish(node=self.node, host=self.host, at=_dt(self.host.time()))

    def sample(self, now: float, servers: Mapping[int, Server]) -> None:
        """Memory and CPU of each of `servers` that runs and of the system, in one transaction;
        and the heartbeat, with the memory available. The hub cache and pruning when due."""
        at = _dt(now)
        processes = {pk: rt.process for pk, rt in self.runtimes.items() if pk in servers and rt.process is not None}
        usages = upkeep.usages_measure(self.host, processes)
        with transaction.atomic():
            available = upkeep.samples_write(node=self.node, host=self.host, at=at, usages=usages, servers=servers)
            self.beat(now, memory_available=available)
        upkeep.logs_rotate((servers[pk].profile_id for pk in usages), self.policy)
        if now >= self.next_cache_size:
            self.next_cache_size = now + self.policy.cache_size_interval
            self.measure_hub_cache()
        if now >= self.next_prune:
            self.next_prune = now + 60
            self.prune(at)

    def prune(self, at: datetime) -> None:
        """Once a minute: samples past their retention, and the apps' clean-ups."""
        upkeep.samples_prune(node=self.node, cutoff=at - timedelta(seconds=self.policy.sample_retention), at=at)
