"""The supervisor running the second engine: real mlx_vlm.server processes on the tiny models
(testing/tinyvlm.py), ready only once the model answered a request of its kind, and `fatal` with
the reason when the model cannot load. The loop runs in the test's thread."""

from __future__ import annotations

import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from profiles.models import Engine, Kind, ServerProfile
from servers.logs import server_log_path
from servers.models import Server, ServerEvent
from servers.services import server_start, server_stop
from servers.states import State
from servers.supervisor.core import Policy, Supervisor
from servers.supervisor.host import RealHost
from servers.tests.test_supervisor_real import health_status, run_until
from testing.net import free_port
from testing.supervisor import SupervisorProcesses, health_ok, server_processes, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.mlx]


def vlm_profile(model: Path, kind: str) -> ServerProfile:
    port = free_port()
    return ServerProfile.objects.create(
        name=f"vlm-{kind}-{port}", model=str(model), port=port, engine=Engine.MLX_VLM, kind=kind
    )


# kind, the request the supervisor proves it ready with (as the server logs it), and what the event says
READY = [
    (Kind.VISION, '"POST /v1/chat/completions HTTP/1.1" 200', "Answered a one-token generation"),
    (Kind.EMBEDDINGS, '"POST /v1/embeddings HTTP/1.1" 200', "Answered a one embedding"),
    (Kind.RERANK, '"POST /v1/rerank HTTP/1.1" 200', "Answered a one scored pair"),
]


@pytest.mark.parametrize(("kind", "logged", "said"), READY, ids=[r[0] for r in READY])
def test_each_kind_runs_once_its_model_answered_then_stops_clean(
    tiny_vlm_models: dict[str, Path], kind: str, logged: str, said: str
) -> None:
    profile = vlm_profile(tiny_vlm_models[kind], kind)
    sup = Supervisor(host=RealHost(), policy=Policy.from_settings(start_timeout=120))
    server = server_start(profile=profile, by=None)
    server = run_until(sup, server, {State.RUNNING, State.BACKOFF, State.FATAL}, timeout=150)
    assert server.state == State.RUNNING, server.last_error
    assert health_status(profile.port) == 200
    event = ServerEvent.objects.filter(server=server, to_state="running").get()
    assert event.message.startswith(said), event.message
    log = server_log_path(profile.pk).read_text()
    assert logged in log, "the supervisor's readiness request, answered"
    pid = server.pid
    assert pid is not None and psutil.Process(pid).cmdline()[:3] == [sys.executable, "-m", "mlx_vlm.server"]

    server_stop(profile=profile, by=None)
    run_until(sup, server, {State.STOPPED}, timeout=30)
    assert not psutil.pid_exists(pid) and server_processes(profile.port) == []


@pytest.mark.parametrize("kind", [Kind.VISION, Kind.EMBEDDINGS])
def test_a_model_that_cannot_load_ends_fatal_with_the_reason(tiny_vlm_models: dict[str, Path], kind: str) -> None:
    """A vision tower that does not match its weights: as --model, mlx_vlm.server exits at start;
    as --embedding-model, it stays up without the model, and the one embedding says why."""
    profile = vlm_profile(tiny_vlm_models["broken"], kind)
    policy = Policy.from_settings(start_timeout=60, fatal_after=3, backoff_base=0.1, failure_window=1)
    sup = Supervisor(host=RealHost(), policy=policy)
    server: Server = server_start(profile=profile, by=None)
    started = time.monotonic()
    run_until(sup, server, {State.FATAL}, timeout=170)
    assert time.monotonic() - started < policy.start_timeout, "each attempt ends when the load fails"
    assert "Gave up after 3 failed starts in a row" in server.last_error
    assert server.last_error.count("Expected shape") >= 3, server.last_error
    assert server.pid is None and server_processes(profile.port) == []


def test_kill_9_of_the_supervisor_then_a_new_one_adopts_the_vlm_server(
    supervisor_process: SupervisorProcesses, tiny_vlm_models: dict[str, Path]
) -> None:
    first = supervisor_process.start()
    profile = vlm_profile(tiny_vlm_models["embeddings"], Kind.EMBEDDINGS)
    server_start(profile=profile, by=None)
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what="running")
    supervisor_process.remember_servers()
    pid = Server.objects.get(profile=profile).pid

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert health_ok(profile.port), "the server outlives the supervisor"
    # The wall clock before the start, not psutil's create_time: that one is reckoned from the boot
    # time and drifts from time.time() while the clock is slewed (seen: 0.4 s early, so the first
    # supervisor's last probe already counted as the second's).
    began = datetime.now(UTC)
    supervisor_process.start()
    wait_for(
        lambda: Server.objects.filter(profile=profile, last_health_at__gt=began).exists(),
        timeout=60,
        what="the new supervisor's own health probe",
    )
    server = Server.objects.get(profile=profile)
    assert server.state == State.RUNNING and server.pid == pid
    assert [p.pid for p in server_processes(profile.port)] == [pid], "none extra"
    assert ServerEvent.objects.filter(server=server, message=f"Adopted the running process (PID {pid}).").exists()
