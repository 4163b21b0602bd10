"""Readiness and health of one managed server: the watch of a start (GET /health, then a
one-token generation) and the routine probe of a running one. Every probe runs in the
background, one at a time per server, and its answer wakes the loop (`Owner.answered`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servers.addresses import listen_address
from servers.logs import server_log_path
from servers.states import State
from servers.supervisor import logfile
from servers.supervisor.host import HealthAnswer
from servers.supervisor.policy import KillReason, on_grid, refusal_message, utc
from servers.supervisor.ready import ready_request
from servers.supervisor.transitions import save_fields, transition

if TYPE_CHECKING:
    from servers.supervisor.managed import Managed


def watch_start(m: Managed, now: float) -> None:
    """Starting -> running once GET /health has answered 200 and then a one-token generation
    has come back; a load that failed (503, or the log says so) ends the attempt at once."""
    if now >= m.start_deadline:
        m.kill(KillReason.TIMEOUT)
        return
    answered = any(f is not None and f.done() for f in (m.probe, m.readiness))  # they call `answered`
    if m.process is None or (now < m.next_probe and not answered):
        return
    if _log_says_load_failed(m):
        end_failed_start(m, "The model could not be loaded (mlx-lm's generation thread died).")
        return
    if m.readiness is None:
        _first_health(m, now)
        if m.readiness is None or not m.readiness.done():
            return
    elif not m.readiness.done():
        # Still loading: a slow watch for a load that fails (503) until the answer wakes us.
        answer = health(m, now, next_at=now + m.policy.loading_probe_interval)
        if answer is not None and answer.refused:
            end_failed_start(m, refusal_message(answer.status))
        return
    error = m.readiness.result()
    m.readiness = m.probe = None
    if error:
        end_failed_start(m, error)
        return
    _ready(m, now)


def _ready(m: Managed, now: float) -> None:
    m.failed_starts.clear()
    m.next_probe = on_grid(now, m.policy.health_interval)
    ready = m.host.time()  # when the answer that proved it was seen, not when the tick began
    server = m.server
    since = ready - (server.started_at.timestamp() if server.started_at else ready)
    transition(
        server,
        State.RUNNING,
        cause="health",
        message=f"Answered a {ready_request(server.profile).what} {since:.1f} s after the start "
        "(GET /health answered first).",
        at=utc(ready),
        health_failures=0,
        last_error="",
    )


def _first_health(m: Managed, now: float) -> None:
    """Until GET /health answers: then, the one-token generation goes out (in the background)."""
    answer = health(m, now, next_at=now + m.policy.start_probe_interval)
    if answer is None or not answer.ok:
        if answer is not None and answer.refused:
            end_failed_start(m, refusal_message(answer.status))
        return
    save_fields(m.server, last_health_at=utc(now), last_health_ms=answer.ms)
    m.next_probe = now + m.policy.loading_probe_interval
    address = listen_address(m.server)
    request = ready_request(m.server.profile)
    m.readiness = m.host.generate_one(*address, timeout=max(m.start_deadline - now, 1.0), request=request)
    m.readiness.add_done_callback(m.owner.answered)


def health(m: Managed, now: float, *, next_at: float) -> HealthAnswer | None:
    """The answer to this server's GET /health once it is in, else None. Sent in the background
    when due (at `next_at` again after this one), one at a time per server, so a hung server
    holds one thread for its timeout and never the loop, another server's probe or the beat."""
    if m.probe is None:
        if now < m.next_probe:
            return None
        m.next_probe = next_at
        m.probe = m.host.health_soon(*listen_address(m.server), timeout=m.policy.health_timeout)
        m.probe.add_done_callback(m.owner.answered)
    if not m.probe.done():
        return None
    answer, m.probe = m.probe.result(), None
    return answer


def _log_says_load_failed(m: Managed) -> bool:
    path = server_log_path(m.server.profile.pk)
    end = logfile.size(path)
    if end < m.log_scanned:  # rotated meanwhile
        m.log_start = m.log_scanned = 0
    if end == m.log_scanned:
        return False
    text = logfile.read_from(path, m.log_scanned)
    m.log_scanned = end
    return logfile.GENERATION_DIED in text


def end_failed_start(m: Managed, message: str) -> None:
    """The process cannot serve: end it; its exit then records the failed start."""
    m.readiness = None
    m.kill_message = message
    m.kill(KillReason.FAILED)


def probe(m: Managed, now: float) -> None:
    """The routine probe of a running (or unhealthy) server, on the health grid."""
    answer = health(m, now, next_at=on_grid(now, m.policy.health_interval))
    if answer is None:
        return
    server, policy = m.server, m.policy
    state = State(server.state)
    if answer.ok:
        if state == State.UNHEALTHY:
            transition(
                server,
                State.RUNNING,
                cause="health",
                message="GET /health answers 200 again.",
                last_health_at=utc(now),
                last_health_ms=answer.ms,
                health_failures=0,
            )
        else:
            # Routine good news: saved with the others of this tick (upkeep.save_columns).
            server.last_health_at, server.last_health_ms, server.health_failures = utc(now), answer.ms, 0
            m.owner.healthy.append(server)
        return
    if answer.refused:
        # mlx-lm answers 503 for ever once its generation thread has died: a crash, not a hiccup.
        m.kill_message = refusal_message(answer.status)
        m.kill(KillReason.FAILED)
        return
    failures = server.health_failures + 1
    save_fields(server, health_failures=failures)
    if state == State.RUNNING and failures >= policy.unhealthy_after:
        transition(server, State.UNHEALTHY, cause="health", message=f"GET /health failed {failures} times in a row.")
    elif state == State.UNHEALTHY and failures >= policy.unhealthy_after + policy.restart_unhealthy_after:
        m.kill(KillReason.UNHEALTHY)
