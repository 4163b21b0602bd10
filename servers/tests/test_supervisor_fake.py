"""The state machine alone: the real reconcile loop and database, a fake clock and fake processes.

Every allowed transition is produced by a scenario the way it happens in life (a health check
answering, a process exiting, a user pressing Stop), and the table of scenarios must cover the
whole transition table.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nodes.models import Node
from nodes.selectors import this_node
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerEvent, ServerSample, SystemSample
from servers.services import ServerActionRefused, server_restart, server_start, server_stop
from servers.states import ALLOWED, State
from servers.supervisor.core import Policy, Supervisor
from servers.supervisor.managed import stale_use_release
from servers.tests.supervisor_fakes import FakeHost, FakeProcess, GiB

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

POLICY = Policy(
    start_timeout=30,
    stop_timeout=5,
    health_interval=5,
    unhealthy_after=3,
    restart_unhealthy_after=2,
    backoff_base=1,
    backoff_max=8,
    fatal_after=4,
    failure_window=60,
    memory_headroom=1 * GiB,
)


def fake_model(folder: Path, *, weights: int = 4096) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 16}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\0" * weights)
    return folder


class Rig:
    """One profile, one fake machine, one supervisor; helpers walk the server into each state."""

    def __init__(self, tmp_path: Path, port: int = 9100) -> None:
        self.host = FakeHost()
        self.profile = ServerProfile.objects.create(
            name=f"p{port}", model=str(fake_model(tmp_path / f"model-{port}")), port=port
        )
        self.sup = self.new_supervisor()
        self.server = Server.objects.create(profile=self.profile)

    def new_supervisor(self) -> Supervisor:
        return Supervisor(host=self.host, policy=POLICY, argv_builder=lambda p: ["fake-server", "--port", str(p.port)])

    @property
    def port(self) -> int:
        return self.profile.port

    def tick(self, advance: float = 0.0) -> Server:
        self.host.advance(advance)
        self.sup.tick()
        self.server.refresh_from_db()
        return self.server

    @property
    def process(self) -> FakeProcess:
        return self.host.processes[-1]

    def transitions(self) -> list[tuple[str, str]]:
        events = ServerEvent.objects.filter(server=self.server, kind=ServerEvent.Kind.TRANSITION).order_by("id")
        return [(e.from_state, e.to_state) for e in events]

    def last_transition(self) -> ServerEvent:
        event = ServerEvent.objects.filter(server=self.server, kind=ServerEvent.Kind.TRANSITION).order_by("-id").first()
        assert event is not None
        return event

    # walking into states
    def starting(self) -> None:
        server_start(profile=self.profile, by=None)
        assert self.tick().state == State.STARTING
        assert self.server.pid == self.process.pid

    def running(self) -> None:
        self.starting()
        self.host.ready_ports.add(self.port)
        assert self.tick().state == State.RUNNING

    def unhealthy(self) -> None:
        self.running()
        self.host.ready_ports.discard(self.port)
        for _ in range(POLICY.unhealthy_after):
            self.tick(POLICY.health_interval)
        assert self.server.state == State.UNHEALTHY

    def backoff(self) -> None:
        self.running()
        self.process.exit(1)
        assert self.tick().state == State.BACKOFF

    def fatal(self) -> None:
        self.host.port_holders[self.port] = "nginx (PID 42)"
        server_start(profile=self.profile, by=None)
        assert self.tick().state == State.FATAL
        del self.host.port_holders[self.port]

    def stopping(self) -> None:
        self.running()
        self.process.ignore_term = True
        server_stop(profile=self.profile, by=None)
        assert self.tick().state == State.STOPPING


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# --- one scenario per allowed transition ---


def s_stopped_starting(r: Rig) -> None:
    r.starting()


def s_starting_running(r: Rig) -> None:
    r.starting()
    assert r.tick(1).state == State.STARTING, "must not be running before /health answers"
    r.host.ready_ports.add(r.port)
    assert r.tick(0.02).state == State.RUNNING
    assert r.server.last_health_ms == 1.5


def s_starting_backoff(r: Rig) -> None:
    r.starting()
    r.process.exit(1)
    assert r.tick().state == State.BACKOFF
    assert r.last_transition().exit_code == 1


def s_starting_fatal(r: Rig) -> None:
    r.fatal()
    assert "nginx (PID 42)" in r.server.last_error


def s_starting_stopping(r: Rig) -> None:
    r.starting()
    r.process.ignore_term = True
    server_stop(profile=r.profile, by=None)
    assert r.tick().state == State.STOPPING
    assert r.process.signals == [signal.SIGTERM]


def s_running_unhealthy(r: Rig) -> None:
    r.unhealthy()
    assert r.server.health_failures == POLICY.unhealthy_after


def s_running_backoff(r: Rig) -> None:
    r.backoff()
    assert "exit code 1" in r.server.last_error


def s_running_stopping(r: Rig) -> None:
    r.stopping()


def s_unhealthy_running(r: Rig) -> None:
    r.unhealthy()
    r.host.ready_ports.add(r.port)
    assert r.tick(POLICY.health_interval).state == State.RUNNING
    assert r.server.health_failures == 0


def s_unhealthy_backoff(r: Rig) -> None:
    r.unhealthy()
    first = r.process
    for _ in range(POLICY.restart_unhealthy_after):
        r.tick(POLICY.health_interval)
    assert first.signals == [signal.SIGTERM]
    assert r.tick().state == State.BACKOFF
    assert r.last_transition().cause == "health"


def s_unhealthy_stopping(r: Rig) -> None:
    r.unhealthy()
    r.process.ignore_term = True
    server_stop(profile=r.profile, by=None)
    assert r.tick().state == State.STOPPING


def s_backoff_starting(r: Rig) -> None:
    r.backoff()
    assert r.tick(0.5).state == State.BACKOFF, "the delay has not passed yet"
    assert r.tick(0.6).state == State.STARTING
    assert r.server.restart_count == 1
    assert len(r.host.processes) == 2


def s_backoff_fatal(r: Rig) -> None:
    r.starting()
    for _ in range(POLICY.fatal_after - 1):
        r.process.exit(1)
        assert r.tick().state == State.BACKOFF
        r.tick(POLICY.backoff_max)
        assert r.server.state == State.STARTING
    r.process.exit(1)
    assert r.tick().state == State.FATAL


def s_backoff_stopped(r: Rig) -> None:
    r.backoff()
    server_stop(profile=r.profile, by=None)
    assert r.tick().state == State.STOPPED, "a stop during backoff is immediate"
    assert len(r.host.processes) == 1


def s_stopping_stopped(r: Rig) -> None:
    r.stopping()
    assert r.tick(POLICY.stop_timeout - 1).state == State.STOPPING
    r.tick(1.1)
    assert r.process.signals == [signal.SIGTERM, signal.SIGKILL]
    assert r.tick().state == State.STOPPED
    assert r.server.pid is None
    assert r.server.last_exit_code == -signal.SIGKILL


def s_fatal_starting(r: Rig) -> None:
    r.fatal()
    server_start(profile=r.profile, by=None)  # the user's say-so to try again
    assert r.tick().state == State.STARTING


def s_fatal_stopped(r: Rig) -> None:
    r.fatal()
    server_stop(profile=r.profile, by=None)
    assert r.tick().state == State.STOPPED


SCENARIOS: dict[tuple[State, State], Callable[[Rig], None]] = {
    (State.STOPPED, State.STARTING): s_stopped_starting,
    (State.STARTING, State.RUNNING): s_starting_running,
    (State.STARTING, State.BACKOFF): s_starting_backoff,
    (State.STARTING, State.FATAL): s_starting_fatal,
    (State.STARTING, State.STOPPING): s_starting_stopping,
    (State.RUNNING, State.UNHEALTHY): s_running_unhealthy,
    (State.RUNNING, State.BACKOFF): s_running_backoff,
    (State.RUNNING, State.STOPPING): s_running_stopping,
    (State.UNHEALTHY, State.RUNNING): s_unhealthy_running,
    (State.UNHEALTHY, State.BACKOFF): s_unhealthy_backoff,
    (State.UNHEALTHY, State.STOPPING): s_unhealthy_stopping,
    (State.BACKOFF, State.STARTING): s_backoff_starting,
    (State.BACKOFF, State.FATAL): s_backoff_fatal,
    (State.BACKOFF, State.STOPPED): s_backoff_stopped,
    (State.STOPPING, State.STOPPED): s_stopping_stopped,
    (State.FATAL, State.STARTING): s_fatal_starting,
    (State.FATAL, State.STOPPED): s_fatal_stopped,
}


def test_scenarios_cover_every_allowed_transition() -> None:
    allowed = {(a, b) for a, targets in ALLOWED.items() for b in targets}
    assert set(SCENARIOS) == allowed


@pytest.mark.parametrize("edge", list(SCENARIOS), ids=lambda e: f"{e[0]}->{e[1]}")
def test_allowed_transition(rig: Rig, edge: tuple[State, State]) -> None:
    SCENARIOS[edge](rig)
    event = rig.last_transition()
    assert (event.from_state, event.to_state) == (edge[0].value, edge[1].value)
    assert event.cause
    assert edge in rig.transitions()
    assert rig.server.state == edge[1]
    # every transition the scenario went through was allowed
    assert all(State(b) in ALLOWED[State(a)] for a, b in rig.transitions())


# --- behaviour beyond single transitions ---


def test_backoff_delay_grows_and_fatal_keeps_the_log_tail(rig: Rig) -> None:
    rig.starting()
    delays = []
    for _ in range(POLICY.fatal_after - 1):
        rig.process.exit(1)
        rig.tick()
        assert rig.server.backoff_until is not None
        delays.append(rig.server.backoff_until.timestamp() - rig.host.now)
        rig.tick(rig.server.backoff_until.timestamp() - rig.host.now)
    assert delays == [1, 2, 4]
    rig.process.exit(3)
    assert rig.tick().state == State.FATAL
    assert "Gave up after 4 failed starts in a row" in rig.server.last_error
    assert "=== " in rig.server.last_error and "fake-server --port 9100" in rig.server.last_error


def test_a_sigkill_from_outside_is_reported_as_probably_out_of_memory(rig: Rig) -> None:
    rig.running()
    rig.process.exit(-signal.SIGKILL)  # the OOM killer, not us
    assert rig.tick().state == State.BACKOFF
    assert rig.server.last_error == (
        "The process was killed by SIGKILL, which the supervisor did not send: "
        "most likely the system ran out of memory. Try a smaller model or stop another server."
    )
    rig.tick(rig.server.backoff_until.timestamp() - rig.host.now if rig.server.backoff_until else 0)
    rig.host.ready_ports.add(rig.port)
    rig.process.exit(1)
    assert rig.tick().last_error == "The process exited on its own (exit code 1)."


def test_fatal_is_left_only_by_a_user_action(rig: Rig) -> None:
    rig.fatal()
    for _ in range(20):
        rig.tick(60)
    assert rig.server.state == State.FATAL
    assert rig.host.processes == []
    server_start(profile=rig.profile, by=None)
    assert rig.tick().state == State.STARTING


def test_start_timeout_kills_and_counts_as_a_failed_start(rig: Rig) -> None:
    rig.starting()
    rig.tick(POLICY.start_timeout + 1)
    assert rig.process.signals == [signal.SIGTERM]
    assert rig.tick().state == State.BACKOFF
    assert "Did not answer a one-token generation within 30 s" in rig.server.last_error
    assert rig.last_transition().cause == "timeout"


def test_restart_request_stops_then_starts_once(rig: Rig) -> None:
    rig.running()
    first = rig.process
    rig.host.ready_ports.clear()
    server_restart(profile=rig.profile, by=None)
    rig.tick()
    assert first.signals == [signal.SIGTERM]
    rig.tick()
    assert rig.server.state == State.STARTING
    assert rig.server.restart_count == 1
    assert rig.server.restart_handled == rig.server.restart_requested == 1
    rig.tick()
    rig.tick()
    assert len(rig.host.processes) == 2 and len(rig.host.alive()) == 1
    assert rig.transitions()[-3:] == [("running", "stopping"), ("stopping", "stopped"), ("stopped", "starting")]


def test_twenty_start_requests_spawn_one_process(rig: Rig) -> None:
    for _ in range(20):
        with contextlib.suppress(ServerActionRefused):
            server_start(profile=rig.profile, by=None)
        rig.tick(0.05)
    rig.host.ready_ports.add(rig.port)
    rig.tick(0.05)
    assert len(rig.host.processes) == 1
    assert rig.server.state == State.RUNNING


def test_precheck_refusals_spawn_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.host.available = 2 * GiB
    rig.profile.model = str(fake_model(tmp_path / "big", weights=2 * 1024**2))
    rig.profile.save()
    rig.sup.policy = Policy(memory_headroom=2 * GiB - 1024**2)
    server_start(profile=rig.profile, by=None)
    assert rig.tick().state == State.FATAL
    assert "does not fit in memory" in rig.server.last_error
    assert "2.1 GB available minus 2.1 GB kept free" in rig.server.last_error
    assert rig.host.processes == []

    server_stop(profile=rig.profile, by=None)
    rig.tick()
    rig.profile.model = "mlx-community/not-downloaded-4bit"
    rig.profile.save()
    Server.objects.filter(pk=rig.server.pk).update(last_exit_code=1)  # from a run before the model went
    server_start(profile=rig.profile, by=None)
    assert rig.tick().state == State.FATAL
    assert "mlx-community/not-downloaded-4bit is not on this machine" in rig.server.last_error
    assert rig.server.last_exit_code is None  # no process ran this time: no exit code to show
    assert rig.host.processes == []


def test_adoption_keeps_a_live_process_and_clears_a_gone_one(tmp_path: Path) -> None:
    a, b = Rig(tmp_path, 9101), Rig(tmp_path, 9102)
    b.host = a.host
    b.sup = a.sup
    a.running()
    b.running()
    b.process.exit(-9)  # dies while no supervisor is watching
    # the supervisor restarts: a new object, same machine
    new = a.new_supervisor()
    new.begin()
    a.server.refresh_from_db()
    b.server.refresh_from_db()
    assert a.server.state == State.RUNNING and a.server.pid == a.host.processes[0].pid
    assert b.server.state == State.BACKOFF and b.server.pid is None
    assert ServerEvent.objects.filter(server=a.server, message__startswith="Adopted").exists()
    assert ServerEvent.objects.filter(server=b.server, message__contains="gone").exists()
    new.tick()
    assert len(a.host.alive()) == 2, "b was started again, a was not duplicated"
    assert len(a.host.processes) == 3


def test_a_child_whose_pid_was_never_saved_is_found_by_its_marker_and_adopted(rig: Rig) -> None:
    rig.starting()
    child = rig.process
    Server.objects.filter(pk=rig.server.pk).update(pid=None, process_started_at=None, cmdline=[])  # died before save
    new = rig.new_supervisor()
    new.begin()
    rig.server.refresh_from_db()
    assert (rig.server.state, rig.server.pid, rig.server.cmdline) == (State.STARTING, child.pid, child.argv)
    rig.host.ready_ports.add(rig.port)
    new.tick()
    rig.server.refresh_from_db()
    assert rig.server.state == State.RUNNING and rig.host.alive() == [child], "adopted, not started twice"


def test_a_marked_child_of_a_server_that_should_not_run_is_ended(rig: Rig) -> None:
    rig.starting()
    child = rig.process
    Server.objects.filter(pk=rig.server.pk).update(pid=None, process_started_at=None, cmdline=[])
    server_stop(profile=rig.profile, by=None)
    new = rig.new_supervisor()
    new.begin()
    for _ in range(3):
        new.tick()
        rig.host.advance(POLICY.stop_timeout + 1)
    rig.server.refresh_from_db()
    assert rig.host.alive() == [] and not child.alive()
    assert rig.server.state == State.STOPPED and rig.server.pid is None


def test_adoption_refuses_a_reused_pid(rig: Rig) -> None:
    rig.running()
    rig.process.create_time += 1  # same PID, another program now
    new = rig.new_supervisor()
    new.begin()
    rig.server.refresh_from_db()
    assert rig.server.state == State.BACKOFF and rig.server.pid is None


def test_shutdown_stops_gracefully_and_keeps_desired_state(rig: Rig) -> None:
    rig.running()
    rig.sup.begin_shutdown()
    rig.tick()
    rig.tick()
    assert rig.server.state == State.STOPPED
    assert rig.server.desired_state == DesiredState.RUNNING
    assert not rig.sup.busy()
    assert rig.process.signals == [signal.SIGTERM]
    # the next supervisor brings it back
    new = rig.new_supervisor()
    new.begin()
    new.tick()
    rig.server.refresh_from_db()
    assert rig.server.state == State.STARTING
    started = rig.last_transition()
    assert (started.cause, started.message) == ("supervisor", "Starting with the supervisor.")  # not "user"
    # a Start pressed later is the person's again
    server_stop(profile=rig.profile, by=None)
    rig.host.ready_ports.add(rig.port)
    rig.sup = new
    for _ in range(10):
        if rig.tick().state == State.STOPPED:
            break
    assert rig.server.state == State.STOPPED
    server_start(profile=rig.profile, by=None)
    assert rig.tick().state == State.STARTING
    assert (rig.last_transition().cause, rig.last_transition().message) == ("user", "Starting.")


def test_auto_start_profiles_start_with_the_supervisor(rig: Rig) -> None:
    rig.profile.auto_start = True
    rig.profile.save()
    rig.sup.begin()
    assert rig.tick().state == State.STARTING
    assert this_node().heartbeat_at is not None


def test_deleted_profile_process_is_ended(rig: Rig) -> None:
    rig.running()
    process = rig.process
    rig.profile.delete()
    rig.sup.tick()
    assert process.signals == [signal.SIGTERM] and not process.alive()
    rig.sup.tick()
    assert rig.sup.runtimes == {}


def test_samples_are_taken_and_old_ones_pruned(rig: Rig) -> None:
    rig.running()
    long_ago = datetime.fromtimestamp(rig.host.now, UTC) - timedelta(hours=2)
    ServerSample.objects.create(server=rig.server, taken_at=long_ago, rss_bytes=1, cpu_percent=0)
    rig.tick(61)  # pruning runs once a minute
    samples = ServerSample.objects.filter(server=rig.server)
    assert {s.rss_bytes for s in samples} == {100 * 1024**2}
    assert rig.server.rss_bytes == 100 * 1024**2
    assert SystemSample.objects.count() >= 1


def test_idle_loop_sleeps_until_something_is_due(rig: Rig) -> None:
    rig.sup.tick()
    assert rig.sup.seconds_until_next() == pytest.approx(POLICY.idle_interval)
    rig.starting()
    assert rig.sup.seconds_until_next() <= POLICY.start_probe_interval


def test_a_hung_probe_holds_neither_another_start_nor_the_loop(rig: Rig, tmp_path: Path) -> None:
    rig.running()
    rig.host.hung_ports.add(rig.port)
    other = Rig(tmp_path, port=9101)
    other.host, other.sup = rig.host, rig.sup  # two servers, one supervisor
    answers: list[None] = []
    rig.sup.notify = lambda: answers.append(None)
    rig.tick(POLICY.health_interval)
    assert len(rig.host.hung_probes) == 1
    assert rig.sup.seconds_until_next() > 1, "a probe under way is not waited for by spinning"

    other.starting()
    rig.host.ready_ports.add(other.port)
    assert other.tick(0.02).state == State.RUNNING, "started while the first server's probe hangs"
    assert len(rig.host.hung_probes) == 1, "one probe at a time per server"
    rig.tick(POLICY.health_interval)
    assert len(rig.host.hung_probes) == 1 and rig.server.health_failures == 0

    before = len(answers)
    rig.host.answer_hung()  # timed out
    assert len(answers) == before + 1, "its answer wakes the loop"
    assert rig.sup.seconds_until_next() == 0
    assert rig.tick().health_failures == 1
    rig.tick()  # overdue meanwhile: the next probe goes out
    assert len(rig.host.hung_probes) == 1 and rig.sup.seconds_until_next() > 1


def test_while_one_starts_only_it_is_probed_fast_and_the_rest_waits_for_a_full_pass(rig: Rig, tmp_path: Path) -> None:
    rig.running()
    other = Rig(tmp_path, port=9101)
    other.host, other.sup = rig.host, rig.sup
    other.starting()
    server_stop(profile=rig.profile, by=None)  # a wake-up would ask for a full pass; none came
    calls = rig.host.health_calls
    for _ in range(10):
        rig.host.advance(POLICY.start_probe_interval)
        assert rig.sup.seconds_until_next() <= POLICY.start_probe_interval
        rig.sup.tick(full=False)
    assert rig.host.health_calls - calls == 10, "only the starting server was probed"
    rig.server.refresh_from_db()
    assert rig.server.state == State.RUNNING, "the stop waits for a full pass"
    assert rig.tick().state in (State.STOPPING, State.STOPPED)  # tick() is a full pass


def test_answers_that_arrive_together_are_applied_in_one_pass_without_reading_the_rows(
    rig: Rig, tmp_path: Path
) -> None:
    rigs = [rig, *(Rig(tmp_path, port=9101 + n) for n in range(2))]
    for each in rigs:
        each.host, each.sup = rig.host, rig.sup  # three servers, one supervisor
        each.running()
        rig.host.hung_ports.add(each.port)  # their next answers wait for answer_hung
    rig.tick(POLICY.health_interval)  # the full pass: every row read, every probe sent
    assert len(rig.host.hung_probes) == 3
    rig.host.advance(0.01)
    rig.host.answer_hung(200)
    with CaptureQueriesContext(connection) as queries:
        rig.sup.tick(full=False)
    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert "SELECT" not in statements, "the rows are not read again"
    assert statements.count("UPDATE") == 3, "one write per server, in one transaction"
    answered_at = datetime.fromtimestamp(rig.host.now, UTC)
    for each in rigs:
        each.server.refresh_from_db()
        assert each.server.last_health_at == answered_at and each.server.health_failures == 0


def test_waiting_for_a_stop_does_not_spin(rig: Rig) -> None:
    rig.stopping()
    assert rig.sup.seconds_until_next() == pytest.approx(0.1)
    rig.tick(POLICY.stop_timeout)  # SIGKILL; the fake process is gone at once
    rig.tick()
    assert rig.server.state == State.STOPPED
    assert rig.sup.seconds_until_next() > 1


def test_a_profile_the_argv_builder_rejects_is_fatal(rig: Rig) -> None:
    def broken(profile: ServerProfile) -> list[str]:
        raise ValueError("draft model missing")

    rig.sup.argv_builder = broken
    server_start(profile=rig.profile, by=None)
    assert rig.tick().state == State.FATAL
    assert "draft model missing" in rig.server.last_error
    assert rig.host.processes == []


# --- readiness: the model must answer, a load that failed is seen at once ---


def test_running_only_after_the_one_token_answer(rig: Rig) -> None:
    rig.host.hold_generations = True  # the model is still loading: /health says 200, no token yet
    rig.starting()
    rig.host.ready_ports.add(rig.port)
    for _ in range(5):
        assert rig.tick(1).state == State.STARTING
        assert rig.sup.seconds_until_next() > 5 * POLICY.start_probe_interval, "a long load is not a busy loop"
    assert rig.host.generation_calls == 1, "one generation per start, not one per probe"
    rig.host.finish_loading()
    assert rig.tick(0.02).state == State.RUNNING
    assert "one-token generation" in rig.last_transition().message


def test_a_load_that_fails_is_a_failed_start_at_once(rig: Rig) -> None:
    rig.host.hold_generations = True
    rig.starting()
    rig.host.ready_ports.add(rig.port)
    rig.tick(1)
    rig.host.refusing_ports.add(rig.port)  # the load failed: 503 for ever, the process stays up
    rig.tick(POLICY.loading_probe_interval)
    assert rig.process.signals == [signal.SIGTERM], "ended long before the start timeout"
    assert rig.tick().state == State.BACKOFF
    assert "GET /health answered 503" in rig.server.last_error
    assert "killed by SIGTERM" in rig.server.last_error


def test_a_generation_error_is_a_failed_start(rig: Rig) -> None:
    rig.host.generation_error = "The one-token generation answered HTTP 404: generation thread died."
    rig.starting()
    rig.host.ready_ports.add(rig.port)
    rig.tick(0.02)
    assert rig.tick().state == State.BACKOFF
    assert "generation thread died" in rig.server.last_error


def test_slow_failed_starts_still_end_fatal(rig: Rig) -> None:
    """Each attempt takes longer than the failure window; K of them in a row are still fatal."""
    ServerProfile.objects.filter(pk=rig.profile.pk).update(start_timeout=600)
    rig.host.hold_generations = True
    rig.host.ready_ports.add(rig.port)
    rig.starting()
    for attempt in range(1, POLICY.fatal_after + 1):
        rig.tick(POLICY.failure_window + 10)  # loading, for longer than the whole window
        rig.host.finish_loading("The one-token generation answered HTTP 500: out of memory.")
        rig.host.hold_generations = True
        rig.tick(0.02)
        server = rig.tick()
        if attempt < POLICY.fatal_after:
            assert server.state == State.BACKOFF
            rig.tick(POLICY.backoff_max)
            assert rig.server.state == State.STARTING
    assert rig.server.state == State.FATAL
    assert f"Gave up after {POLICY.fatal_after} failed starts in a row" in rig.server.last_error
    assert rig.server.last_error.count("out of memory") >= POLICY.fatal_after
    assert rig.host.alive() == []


def test_a_running_server_whose_health_turns_503_is_restarted(rig: Rig) -> None:
    rig.running()
    first = rig.process
    rig.host.refusing_ports.add(rig.port)
    rig.tick(POLICY.health_interval)
    assert first.signals == [signal.SIGTERM], "at the first 503, not after several failed checks"
    assert rig.tick().state == State.BACKOFF
    assert rig.last_transition().cause == "health"
    rig.host.refusing_ports.clear()
    assert rig.tick(POLICY.backoff_max).state == State.STARTING
    assert rig.tick(0.02).state == State.RUNNING
    assert rig.server.restart_count == 1


def test_crashes_of_a_running_server_far_apart_never_end_fatal(rig: Rig) -> None:
    rig.running()
    for _ in range(POLICY.fatal_after + 2):
        rig.tick(POLICY.failure_window + 1)
        rig.process.exit(1)
        assert rig.tick().state == State.BACKOFF
        rig.tick(POLICY.backoff_max)
        assert rig.tick(0.02).state == State.RUNNING


def test_the_start_timeout_is_the_profile_setting_or_scaled_by_size(rig: Rig, tmp_path: Path) -> None:
    assert rig.sup.start_timeout(rig.profile) == POLICY.start_timeout  # 4 KB of weights
    big = fake_model(tmp_path / "big", weights=0)
    with open(big / "model.safetensors", "wb") as weights:
        weights.truncate(3 * GiB)  # sparse: 3 GiB on paper
    rig.profile.model = str(big)
    assert rig.sup.start_timeout(rig.profile) == POLICY.start_timeout + 30
    rig.profile.start_timeout = 45
    rig.profile.save()
    rig.starting()
    rig.tick(44)
    assert rig.process.signals == []
    rig.tick(1)
    assert rig.process.signals == [signal.SIGTERM]
    assert rig.tick().state == State.BACKOFF
    assert "within 45 s" in rig.server.last_error


# --- on demand: idle stop ---


def test_an_idle_server_is_stopped_after_its_idle_time_but_never_with_a_request_in_flight(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    ServerProfile.objects.filter(pk=rig.profile.pk).update(idle_minutes=2)
    rig.running()
    used = datetime.fromtimestamp(rig.host.time(), UTC)
    Server.objects.filter(pk=rig.server.pk).update(last_used_at=used, in_flight=1)  # a long stream
    assert rig.tick(3 * 60).state == State.RUNNING  # in flight: never idle, however long
    Server.objects.filter(pk=rig.server.pk).update(last_used_at=used, in_flight=0)
    assert rig.tick().state == State.STOPPING  # ended 3 min ago, idle time 2 min
    event = rig.last_transition()
    assert event.cause == "idle" and "2 min idle" in event.message
    assert rig.server.desired_state == DesiredState.STOPPED
    rig.process.exit(0)
    assert rig.tick().state == State.STOPPED


def test_a_request_whose_worker_died_stops_counting_after_an_hour_unused(tmp_path: Path) -> None:
    """A gunicorn worker killed mid-request never counts its request down: once the server has
    been unused for `in_flight_stale`, the count is taken as stale and idle time runs again."""
    rig = Rig(tmp_path)
    ServerProfile.objects.filter(pk=rig.profile.pk).update(idle_minutes=5)
    rig.running()
    used = datetime.fromtimestamp(rig.host.time(), UTC)
    Server.objects.filter(pk=rig.server.pk).update(last_used_at=used, in_flight=1)  # its worker was killed
    assert rig.tick(POLICY.in_flight_stale - 1).state == State.RUNNING  # still counted as answering
    assert rig.server.in_flight == 1
    assert rig.tick(1).state == State.STOPPING
    assert rig.server.in_flight == 0
    note = ServerEvent.objects.filter(server=rig.server, kind=ServerEvent.Kind.NOTE).latest("pk")
    assert "1 /v1/ request(s) unfinished after 60 min" in note.message
    assert rig.last_transition().cause == "idle"


def test_a_stale_count_is_kept_when_a_request_began_meanwhile(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.running()
    old = datetime.fromtimestamp(rig.host.time(), UTC)
    Server.objects.filter(pk=rig.server.pk).update(last_used_at=old, in_flight=1)
    server = Server.objects.select_related("profile").get(pk=rig.server.pk)
    Server.objects.filter(pk=server.pk).update(in_flight=2, last_used_at=old + timedelta(hours=1))  # a new one
    stale_use_release(server, now=rig.host.time() + POLICY.in_flight_stale, stale_after=POLICY.in_flight_stale)
    assert Server.objects.get(pk=server.pk).in_flight == 2


def test_idle_time_counts_from_the_last_request_and_blank_means_never(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.running()
    assert rig.tick(10 * 60).state == State.RUNNING  # no idle time set
    ServerProfile.objects.filter(pk=rig.profile.pk).update(idle_minutes=5)
    Server.objects.filter(pk=rig.server.pk).update(last_used_at=datetime.fromtimestamp(rig.host.time(), UTC))
    assert rig.tick(4 * 60).state == State.RUNNING
    assert rig.tick(61).state == State.STOPPING


# --- on demand: making room ---


def two_on_demand(tmp_path: Path, *, a_fields: dict[str, object] | None = None) -> tuple[Rig, Server]:
    """A (on demand, running, idle, using 1 GiB) and B (on demand, asked for by a request) that
    does not fit until A's memory is free."""
    rig = Rig(tmp_path)
    ServerProfile.objects.filter(pk=rig.profile.pk).update(on_demand=True, **(a_fields or {}))
    server_start(profile=rig.profile, by=None, cause="gateway")
    rig.tick()
    rig.host.ready_ports.add(rig.port)
    assert rig.tick().state == State.RUNNING
    Server.objects.filter(pk=rig.server.pk).update(rss_bytes=GiB)
    b = ServerProfile.objects.create(
        name="b", model=str(fake_model(tmp_path / "model-b", weights=100 * 1024**2)), port=9101, on_demand=True
    )
    rig.host.available = POLICY.memory_headroom + 50 * 1024**2  # B needs 110 MiB
    server_start(profile=b, by=None, cause="gateway")
    return rig, Server.objects.get(profile=b)


def test_an_on_demand_start_that_does_not_fit_stops_the_idle_one_first(tmp_path: Path) -> None:
    rig, b = two_on_demand(tmp_path)
    assert rig.tick().state == State.STOPPED  # the fake process ends at SIGTERM
    room = ServerEvent.objects.get(server=rig.server, to_state=State.STOPPING)
    assert room.cause == "room" and room.message == "Stopped to make room for b."
    assert rig.server.desired_state == DesiredState.STOPPED
    b.refresh_from_db()
    assert b.state == State.STOPPED  # not yet: A's memory is not free yet
    rig.host.available += GiB
    rig.tick()
    b.refresh_from_db()
    assert b.state == State.STARTING


@pytest.mark.parametrize("how", ["kept running", "started by hand", "request in flight", "on another node"])
def test_no_room_is_made_from_a_kept_running_hand_started_busy_or_other_nodes_server(tmp_path: Path, how: str) -> None:
    rig, b = two_on_demand(tmp_path, a_fields={"keep_running": True} if how == "kept running" else None)
    if how == "started by hand":
        Server.objects.filter(pk=rig.server.pk).update(started_on_demand=False)
    if how == "request in flight":
        Server.objects.filter(pk=rig.server.pk).update(in_flight=1)
    if how == "on another node":  # its memory is another Mac's: stopping it frees nothing here
        ServerProfile.objects.filter(pk=rig.profile.pk).update(node=Node.objects.create(name="studio"))
    assert rig.tick().state == State.RUNNING
    assert rig.server.desired_state == DesiredState.RUNNING
    b.refresh_from_db()
    assert b.state == State.FATAL
    assert "does not fit in memory" in b.last_error and "kept free as headroom" in b.last_error
