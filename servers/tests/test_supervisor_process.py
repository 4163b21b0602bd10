"""`manage.py runsupervisor` as a real process: kill -9 and adoption, twenty simultaneous Starts,
one instance per data directory, a clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.db import connection

from nodes.models import Node
from nodes.selectors import this_node
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerEvent
from servers.services import ServerActionRefused, server_start
from servers.states import State
from testing.net import free_port
from testing.supervisor import (
    BASE_DIR,
    SupervisorProcesses,
    health_ok,
    server_processes,
    supervisor_env,
    wait_for,
)

pytestmark = pytest.mark.mlx


def make_profile(model: Path) -> ServerProfile:
    port = free_port()
    return ServerProfile.objects.create(name=f"proc-{port}", model=str(model), port=port)


def state_of(profile: ServerProfile) -> str:
    return Server.objects.get(profile=profile).state


def test_kill_9_of_the_supervisor_then_a_new_one_adopts_both_servers(
    supervisor_process: SupervisorProcesses, tiny_model: Path
) -> None:
    first = supervisor_process.start()
    profiles = [make_profile(tiny_model), make_profile(tiny_model)]
    for profile in profiles:
        server_start(profile=profile, by=None)
    wait_for(lambda: all(state_of(p) == State.RUNNING for p in profiles), timeout=120, what="both running")
    supervisor_process.remember_servers()
    pids = {p.pk: Server.objects.get(profile=p).pid for p in profiles}

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    for profile in profiles:
        assert health_ok(profile.port), "the servers outlive the supervisor"

    # The wall clock before the start, not psutil's create_time: that one is reckoned from the boot
    # time and drifts from time.time() while the clock is slewed (seen: 0.4 s early, so the first
    # supervisor's last probe already counted as the second's).
    began = datetime.now(UTC)
    second = supervisor_process.start()
    wait_for(
        lambda: Server.objects.filter(profile__in=profiles, last_health_at__gt=began).count() == len(profiles),
        timeout=60,
        what="the new supervisor's own health probes of both servers",
    )
    assert second.poll() is None
    for profile in profiles:
        server = Server.objects.get(profile=profile)
        assert server.state == State.RUNNING
        assert server.pid == pids[profile.pk]
        assert health_ok(profile.port)
        assert [p.pid for p in server_processes(profile.port)] == [server.pid], "none extra"
        assert ServerEvent.objects.filter(server=server, message=f"Adopted the running process (PID {server.pid}).")
        starts = ServerEvent.objects.filter(server=server, from_state="stopped", to_state="starting")
        assert starts.count() == 1


@pytest.mark.postgres
def test_twenty_concurrent_start_requests_make_one_process(
    supervisor_process: SupervisorProcesses, tiny_model: Path
) -> None:
    supervisor_process.start()
    profile = make_profile(tiny_model)
    Server.objects.create(profile=profile)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def press_start() -> None:
        try:
            barrier.wait()
            server_start(profile=profile, by=None)
            outcomes.append("accepted")
        except ServerActionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=press_start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # One accepted, nineteen refused ("already asked to start"): on PostgreSQL because server_start
    # locks the row (SELECT ... FOR UPDATE), on SQLite because its IMMEDIATE transactions take turns.
    assert len(outcomes) == 20 and outcomes.count("accepted") == 1, outcomes
    wait_for(lambda: state_of(profile) == State.RUNNING, timeout=120, what="running")
    supervisor_process.remember_servers()
    time.sleep(2)
    server = Server.objects.get(profile=profile)
    assert [p.pid for p in server_processes(profile.port)] == [server.pid]
    assert ServerEvent.objects.filter(server=server, to_state="starting").count() == 1
    assert ServerEvent.objects.filter(server=server, kind=ServerEvent.Kind.ACTION).count() == outcomes.count("accepted")


def run_second_supervisor() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "runsupervisor"],
        cwd=BASE_DIR,
        env=supervisor_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_supervisor_per_data_directory_even_while_one_is_shutting_down(
    supervisor_process: SupervisorProcesses, tiny_model: Path
) -> None:
    # A stop timeout longer than the test: the shutdown lasts until the frozen server is let go.
    first = supervisor_process.start(env={"MLXM_STOP_TIMEOUT": "3600"})
    second = run_second_supervisor()
    assert second.returncode != 0
    assert f"Another supervisor (PID {first.pid}) is already running" in second.stderr

    profile = make_profile(tiny_model)
    server_start(profile=profile, by=None)
    wait_for(lambda: state_of(profile) == State.RUNNING, timeout=120, what="running")
    supervisor_process.remember_servers()
    pid = Server.objects.get(profile=profile).pid
    assert pid is not None
    # A frozen server makes the shutdown wait (for the stop timeout) until it is let go.
    os.kill(pid, signal.SIGSTOP)
    first.send_signal(signal.SIGTERM)
    wait_for(lambda: state_of(profile) == State.STOPPING, timeout=60, what="stopping")
    assert first.poll() is None, supervisor_process.output(first)
    during = run_second_supervisor()
    assert during.returncode != 0, "the lock is held until the old supervisor has finished"
    assert "already running" in during.stderr
    assert first.poll() is None, "still shutting down: the second was refused by the lock, not by luck"
    os.kill(pid, signal.SIGCONT)  # the SIGTERM it holds now ends it
    assert first.wait(60) == 0, supervisor_process.output(first)

    server = Server.objects.get(profile=profile)
    assert server.state == State.STOPPED, list(ServerEvent.objects.filter(server=server).values_list("message"))
    assert server.desired_state == DesiredState.RUNNING, "kept, so it starts again with the supervisor"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server_processes(profile.port) == []
    beat = this_node()
    assert beat.stopped_at is not None

    # and the next supervisor brings it back
    supervisor_process.start()
    wait_for(lambda: state_of(profile) == State.RUNNING, timeout=120, what="running again")
    supervisor_process.remember_servers()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def test_a_start_wakes_the_supervisor_which_acts_on_it(supervisor_process: SupervisorProcesses) -> None:
    """The web side's wake-up datagram ends the idle sleep. How soon it acts is a figure of
    `make bench` (bench_supervisor: Start to ready, paired against by hand), not a test's timing;
    here: every Start is acted on, and its refusal says why."""
    supervisor_process.start()
    for n in range(3):
        profile = ServerProfile.objects.create(name=f"wake-{n}", model="/nonexistent/model", port=free_port())
        server_start(profile=profile, by=None)
        wait_for(lambda p=profile: state_of(p) == State.FATAL, timeout=60, what="refused")  # type: ignore[misc]
        server = Server.objects.get(profile=profile)
        asked = ServerEvent.objects.get(server=server, action="start").created_at
        acted = ServerEvent.objects.get(server=server, to_state="starting").created_at
        assert acted >= asked
        assert "not on this machine" in server.last_error


class HeartbeatWatch:
    """Reads the supervisor's heartbeat from a thread of the test and keeps its greatest age."""

    def __init__(self) -> None:
        self.oldest = 0.0
        self.reads = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HeartbeatWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)

    def _watch(self) -> None:
        try:
            while not self.done.wait(0.25):
                beat_at = Node.objects.values_list("heartbeat_at", flat=True).get(name=settings.MLXM_NODE_NAME)
                assert beat_at is not None
                self.oldest = max(self.oldest, (datetime.now(UTC) - beat_at).total_seconds())
                self.reads += 1
        finally:
            connection.close()


def start_to_running(server: Server) -> float:
    """Seconds from its spawn to the probe that proved it ready (what the `running` stamp says)."""
    assert server.state == State.RUNNING
    assert server.started_at is not None and server.state_changed_at is not None
    return (server.state_changed_at - server.started_at).total_seconds()


@pytest.mark.timeout(900)
def test_eight_frozen_servers_slow_neither_a_start_nor_the_heartbeat_and_are_replaced(
    supervisor_process: SupervisorProcesses, tiny_model: Path
) -> None:
    """The probes of different servers run side by side: with eight hung servers one after the
    other, every pass would wait 8 x the probe timeout (16 s), more than the heartbeat may age,
    and a start, which needs two passes after its spawn (one sees /health and asks for a token,
    the next sees the token), would take at least twice that."""
    from servers.supervisor.core import Policy

    policy = Policy.from_settings()
    supervisor_process.start()
    frozen = [make_profile(tiny_model) for _ in range(8)]
    for profile in frozen:
        server_start(profile=profile, by=None)
    wait_for(lambda: all(state_of(p) == State.RUNNING for p in frozen), timeout=400, what="eight running")
    supervisor_process.remember_servers()
    old_pids = {p.pk: Server.objects.get(profile=p).pid for p in frozen}
    ninth = make_profile(tiny_model)
    try:
        with HeartbeatWatch() as heartbeat:
            for pid in old_pids.values():
                assert pid is not None
                os.kill(pid, signal.SIGSTOP)
            server_start(profile=ninth, by=None)
            wait_for(lambda: state_of(ninth) == State.RUNNING, timeout=240, what="the ninth running")
            supervisor_process.remember_servers()

            def replaced(profile: ServerProfile) -> bool:
                server = Server.objects.get(profile=profile)
                return server.state == State.RUNNING and server.pid not in (None, old_pids[profile.pk])

            wait_for(lambda: all(replaced(p) for p in frozen), timeout=600, what="the frozen ones replaced")
            supervisor_process.remember_servers()
        assert heartbeat.reads > 100
        assert heartbeat.oldest < settings.MLXM_HEARTBEAT_STALE, "the supervisor looked stopped"
        assert start_to_running(Server.objects.get(profile=ninth)) < 2 * 8 * policy.health_timeout
        for profile in frozen:
            server = Server.objects.get(profile=profile)
            assert ServerEvent.objects.filter(server=server, to_state=State.UNHEALTHY, cause="health").exists()
            assert server.restart_count >= 1 and health_ok(profile.port)
            assert [p.pid for p in server_processes(profile.port)] == [server.pid], "the frozen one is gone"
    finally:
        for pid in filter(None, old_pids.values()):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # SIGKILL ends a stopped process too; SIGCONT is not needed
