"""One managed model server: what the supervisor keeps about it between ticks, and its own
reconcile (start, stop, kill, its exit, a failure). Readiness and health probes are in probes.py,
taking over a server left running in adoption.py; who is stopped to make room is the loop's
(loop.py, eviction.py).

Like supervisord's `Subprocess`: each server is an object with its own state, and every change of
`Server.state` goes through `transitions.transition`; every OS call goes through `owner.host`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db.models import F

from profiles.argv import one_line
from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.models import DesiredState, Server
from servers.states import PROBED, UP, State
from servers.supervisor import adoption, checks, eviction, logfile, probes
from servers.supervisor.adoption import server_marker
from servers.supervisor.host import HealthAnswer, Host, Process
from servers.supervisor.policy import KILLED_FROM_OUTSIDE, KillReason, Policy, describe_exit, start_timeout, utc
from servers.supervisor.transitions import save_fields, server_note, transition

ArgvBuilder = Callable[[ServerProfile], list[str]]


class Owner(Protocol):
    """What a managed server needs from the loop that owns it (`loop.Supervisor`)."""

    host: Host
    policy: Policy
    argv_builder: ArgvBuilder
    shutting_down: bool
    healthy: list[Server]  # probed fine this tick: saved together at its end

    def answered(self, future: Future[Any]) -> None:
        """A probe's answer is in (called from its thread)."""

    def making_room(self, managed: Managed) -> bool:
        """True while this on-demand start waits for servers stopped to make room for it."""


def fault_point(name: str) -> None:
    """Fault injection for the tests: MLXM_TEST_FAULT=<name> kills this process here, as kill -9 would."""
    if os.environ.get("MLXM_TEST_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def stale_use_release(server: Server, *, now: float, stale_after: float) -> None:
    """Count as ended the requests whose server has been unused for `stale_after` (their worker
    died before counting them down). Conditional on the row as read, so a request that began or
    ended meanwhile keeps its count."""
    if not eviction.use_stale(
        in_flight=server.in_flight, last_used_at=server.last_used_at, now=now, stale_after=stale_after
    ):
        return
    released = Server.objects.filter(pk=server.pk, in_flight=server.in_flight, last_used_at=server.last_used_at).update(
        in_flight=0
    )
    if released:
        count, server.in_flight = server.in_flight, 0
        message = f"{count} /v1/ request(s) unfinished after {round(stale_after / 60)} min without use: taken as gone."
        server_note(server, cause="supervisor", message=message)


@dataclass(eq=False)
class Managed:
    """One server's runtime state; `server` is its row as the loop last read (or wrote) it."""

    owner: Owner
    server: Server
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
    resuming: bool = False  # wanted running when the supervisor started: its start is the supervisor's
    making_room: set[int] = field(default_factory=set)  # servers being stopped so that this one fits
    state: State = State.STOPPED  # as of the end of the last reconcile

    @property
    def host(self) -> Host:
        return self.owner.host

    @property
    def policy(self) -> Policy:
        return self.owner.policy

    def adopt(self) -> None:
        """Take over a server a previous supervisor left behind, or clear what is gone."""
        adoption.adopt(self)

    # --- the reconcile ---

    def reconcile(self) -> None:
        """Compare what the row wants with what is, and take the next step towards it."""
        server, shutting_down = self.server, self.owner.shutting_down
        if self.process is not None and not self.process.alive():
            self.on_exit()
        state = State(server.state)
        want = server.desired_state == DesiredState.RUNNING and not shutting_down
        restart = server.restart_requested > server.restart_handled and not shutting_down
        if restart:
            save_fields(server, restart_handled=server.restart_requested)
        now = self.host.time()
        if state == State.STOPPED:
            self._when_stopped(want)
        elif state == State.STARTING:
            if not want or restart:
                self.stop(restart=restart)
            elif self.process is None:
                self.fail(message="The process was lost while starting.", cause="exit", exit_code=None)
            elif self.kill_at is None:
                probes.watch_start(self, now)
        elif state in UP:
            if not want or restart:
                self.stop(restart=restart)
            elif not self._stop_if_idle(now) and self.kill_at is None:
                probes.probe(self, now)
        elif state == State.BACKOFF:
            self._when_backing_off(want, restart, now)
        elif state == State.FATAL:
            self._when_fatal(restart)
        elif state == State.STOPPING:
            self._push_stop()
        if self.kill_at is not None and self.process is not None and now >= self.kill_at:
            self.host.signal(self.process, signal.SIGKILL)
            self.kill_at = now + self.policy.stop_timeout
        self.state = State(server.state)
        if self.state not in PROBED:
            self.probe = None  # an answer that came too late to matter would keep the loop awake

    def _when_stopped(self, want: bool) -> None:
        if want and self.process is None and self.owner.making_room(self):
            pass  # started once the servers stopped for it have gone
        elif want and self.process is None:
            if not self.restart_pending:
                # A fresh start by the user: earlier crashes and failed starts no longer count.
                self.failures.clear()
                self.failed_starts.clear()
            if self.resuming:
                self.start(cause="supervisor", message="Starting with the supervisor.")
            else:
                self.start(cause="user" if not self.restart_pending else "restart")
        elif not want:
            self.restart_pending = False  # stopped for good, not half of a restart

    def _when_backing_off(self, want: bool, restart: bool, now: float) -> None:
        if not want:
            by_user = not self.owner.shutting_down
            message = "Stopped during backoff." if by_user else "Supervisor shutting down."
            cause = "user" if by_user else "supervisor"
            transition(self.server, State.STOPPED, cause=cause, message=message, backoff_until=None)
        elif restart or now >= self.backoff_until:
            self.start(cause="restart" if restart else "backoff", restarting=True)

    def _when_fatal(self, restart: bool) -> None:
        if restart:
            self.failures.clear()
            self.failed_starts.clear()
            self.start(cause="user", restarting=True)
        elif self.server.desired_state == DesiredState.STOPPED:
            transition(self.server, State.STOPPED, cause="user", message="Stop requested.")

    # --- start ---

    def start(self, *, cause: str, restarting: bool = False, message: str = "") -> None:
        server, profile, now = self.server, self.server.profile, self.host.time()
        restarting = restarting or self.restart_pending
        self.restart_pending = self.resuming = False
        fields: dict[str, Any] = {"backoff_until": None, "health_failures": 0}
        if restarting:
            fields["restart_count"] = F("restart_count") + 1
        message = message or ("Restarting." if restarting else "Starting.")
        transition(server, State.STARTING, cause=cause, message=message, at=utc(now), **fields)
        server.refresh_from_db(fields=["restart_count"])
        argv = self._argv()
        if argv is None:
            return
        log_path = server_log_path(profile.pk)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile.rotate_if_large(log_path, max_bytes=self.policy.log_max_bytes, backups=self.policy.log_backups)
        logfile.append_line(log_path, f"=== {utc(now):%Y-%m-%d %H:%M:%S} UTC: {one_line(argv)}")
        self.log_start = self.log_scanned = logfile.size(log_path)
        try:
            process = self.host.spawn(argv, log_path=log_path, marker=server_marker(server))
        except OSError as exc:
            self.fail(message=f"Could not start {argv[0]}: {exc}", cause="spawn", exit_code=None)
            return
        fault_point("after-spawn")
        self.process, self.kill_at, self.killing_for = process, None, KillReason.NONE
        self.start_deadline = now + start_timeout(profile, self.policy)
        self.next_probe = now
        self.readiness = self.probe = None
        started = {"process_started_at": process.create_time, "cmdline": list(argv), "started_at": utc(now)}
        save_fields(server, pid=process.pid, port=profile.port, **started)

    def _argv(self) -> list[str] | None:
        """The command line, once the prechecks pass; None when the start was refused (`fatal`:
        no process ran, so an exit code from an earlier run would only mislead)."""
        profile = self.server.profile
        refusal = checks.precheck(profile, self.host, headroom=self.policy.memory_headroom)
        if not refusal:
            try:
                return self.owner.argv_builder(profile)
            except Exception as exc:
                refusal = f"Could not build the server's command line from the profile: {exc}"
        transition(self.server, State.FATAL, cause="precheck", message=refusal, last_error=refusal, last_exit_code=None)
        return None

    # --- stop ---

    def kill(self, reason: KillReason) -> None:
        """End the process without a state change yet; its exit then decides the next state."""
        if self.process is None:
            return
        self.probe = self.readiness = None  # answers about a process being ended are not waited for
        self.killing_for = reason
        self.host.signal(self.process, signal.SIGTERM)
        self.kill_at = self.host.time() + self.policy.stop_timeout

    def _stop_if_idle(self, now: float) -> bool:
        """Stop a server unused for its idle time. The desired state turns `stopped` only if no
        request began meanwhile (one conditional UPDATE), so a request never loses its server."""
        server = self.server
        stale_use_release(server, now=now, stale_after=self.policy.in_flight_stale)
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
        message = f"No /v1/ request for {minutes} min (Stop after {minutes} min idle); stopping."
        self.stop(restart=False, cause="idle", message=message)
        return True

    def stop(self, *, restart: bool, cause: str = "", message: str = "") -> None:
        self.restart_pending = restart
        self.killing_for = KillReason.NONE
        self.probe = self.readiness = None
        if not cause:
            cause, message = self._stop_reason(restart=restart)
        transition(self.server, State.STOPPING, cause=cause, message=message)
        if self.process is not None:
            self.host.signal(self.process, signal.SIGTERM)
            self.kill_at = self.host.time() + self.policy.stop_timeout
        self._push_stop()

    def _stop_reason(self, *, restart: bool) -> tuple[str, str]:
        if self.owner.shutting_down:
            return "supervisor", "Supervisor shutting down; the server starts again with it."
        if restart:
            return "user", "Restart requested."
        return "user", "Stop requested."

    def _push_stop(self) -> None:
        if self.process is None:
            transition(
                self.server, State.STOPPED, cause="supervisor", message="Stopped.", pid=None, process_started_at=None
            )
            self.kill_at = None
            self._start_again()

    def _start_again(self) -> None:
        """After a stop that was half of a restart (or a start asked for while stopping)."""
        if self.server.desired_state == DesiredState.RUNNING and not self.owner.shutting_down:
            self.start(cause="restart")

    def end_deleted(self) -> bool:
        """The profile was deleted: end the process (SIGTERM, then SIGKILL when it is due). True
        once nothing is left to end, and this object may be forgotten."""
        if self.process is None or not self.process.alive():
            return True
        now = self.host.time()
        if self.kill_at is None:
            self.host.signal(self.process, signal.SIGTERM)
            self.kill_at = now + self.policy.stop_timeout
        elif now >= self.kill_at:
            self.host.signal(self.process, signal.SIGKILL)
            self.kill_at = now + self.policy.stop_timeout
        return False

    # --- exit and failure ---

    def on_exit(self) -> None:
        assert self.process is not None
        server = self.server
        code = self.process.exit_code()
        reason = self.killing_for
        self.process, self.kill_at, self.killing_for = None, None, KillReason.NONE
        self.readiness = self.probe = None
        save_fields(server, pid=None, process_started_at=None, last_exit_code=code, rss_bytes=None, cpu_percent=None)
        if State(server.state) == State.STOPPING:
            message = f"Stopped ({describe_exit(code)})."
            transition(server, State.STOPPED, cause="supervisor", message=message, exit_code=code)
            self._start_again()
        elif reason != KillReason.ORPHAN:
            message, cause = self._exit_reading(reason, code)
            self.fail(message=message, cause=cause, exit_code=code)

    def _exit_reading(self, reason: KillReason, code: int | None) -> tuple[str, str]:
        """What an exit of a server that should run means (the event's message, and its cause)."""
        if reason == KillReason.TIMEOUT:
            timeout = start_timeout(self.server.profile, self.policy)
            return f"Did not answer a one-token generation within {timeout:g} s; killed.", "timeout"
        if reason == KillReason.FAILED:
            return f"{self.kill_message} Stopped it ({describe_exit(code)}).", "health"
        if reason == KillReason.UNHEALTHY:
            return f"Restarted after {self.server.health_failures} failed health checks.", "health"
        if code == -signal.SIGKILL:
            return KILLED_FROM_OUTSIDE, "exit"
        return f"The process exited on its own ({describe_exit(code)}).", "exit"

    def fail(self, *, message: str, cause: str, exit_code: int | None) -> None:
        """A crash or a failed start: back off with a growing delay, or `fatal` after too many
        (consecutive failed starts, however long each took; crashes of a running server within
        the failure window). The event and `last_error` carry the log's error lines."""
        server, now, policy = self.server, self.host.time(), self.policy
        errors = logfile.error_lines(logfile.read_from(server_log_path(server.profile.pk), self.log_start))
        if errors:
            message = f"{message}\nFrom the log:\n{errors}"
        if State(server.state) == State.STARTING:
            self.failed_starts.append(message)
            count = len(self.failed_starts)
            summary = f"Gave up after {count} failed starts in a row:\n" + "\n".join(
                f"{n}. {why}" for n, why in enumerate(self.failed_starts, 1)
            )
        else:
            self.failures = [t for t in self.failures if now - t < policy.failure_window] + [now]
            count = len(self.failures)
            summary = f"{message}\nGave up after {count} crashes within {policy.failure_window:g} s."
        delay = policy.backoff_delay(count)
        self.backoff_until = now + delay
        transition(
            server,
            State.BACKOFF,
            cause=cause,
            message=f"{message}\nTrying again in {delay:g} s.",
            exit_code=exit_code,
            backoff_until=utc(self.backoff_until),
            last_error=message,
        )
        if count >= policy.fatal_after:
            error = f"{summary}\nLast lines of the log:\n{logfile.tail(server_log_path(server.profile.pk))}"
            transition(server, State.FATAL, cause=cause, message=error, backoff_until=None, last_error=error)
