"""The supervisor with real processes: a real mlx_lm.server on the generated tiny model, a script
that crashes at start, a foreign socket on the port. The loop runs in the test's thread."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import psutil
import pytest

from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.models import Server, ServerEvent
from servers.services import server_start, server_stop
from servers.states import State
from servers.supervisor.core import Policy, Supervisor
from servers.supervisor.host import RealHost
from testing.net import free_port
from testing.supervisor import server_processes

pytestmark = [pytest.mark.django_db, pytest.mark.mlx]


def make_profile(model: str, port: int | None = None) -> ServerProfile:
    port = port or free_port()
    return ServerProfile.objects.create(name=f"real-{port}", model=model, port=port)


def health_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def run_until(sup: Supervisor, server: Server, states: set[State], *, timeout: float = 60.0) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.tick()
        server.refresh_from_db()
        if server.state in states:
            return server
        time.sleep(min(sup.seconds_until_next(), 0.05))
    raise AssertionError(f"{server.profile.name} stayed {server.state}; last error: {server.last_error}")


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def test_real_server_runs_only_after_health_answers_then_stops_clean(tiny_model: Path) -> None:
    profile = make_profile(str(tiny_model))
    sup = Supervisor(host=RealHost(), policy=Policy.from_settings(start_timeout=120))
    server = server_start(profile=profile, by=None)

    refused_while_starting = 0
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, server.last_error
        sup.tick()
        server.refresh_from_db()
        if server.state == State.STARTING:
            refused_while_starting += health_status(profile.port) != 200
        elif server.state == State.RUNNING:
            assert health_status(profile.port) == 200
            break
        else:
            raise AssertionError(f"unexpected state {server.state}: {server.last_error}")
        time.sleep(0.02)
    assert refused_while_starting > 0, "it was starting while /health did not answer yet"
    became_running = ServerEvent.objects.filter(server=server, to_state="running").get()
    assert became_running.message.startswith("Answered a one-token generation")
    log_before_running = server_log_path(profile.pk).read_text()
    assert '"POST /v1/completions HTTP/1.1" 200' in log_before_running, "the supervisor's one-token request"
    pid = server.pid
    assert pid is not None and psutil.Process(pid).cmdline()[:3] == [sys.executable, "-m", "mlx_lm"]
    assert server.last_health_ms is not None

    body = json.dumps({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{profile.port}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["choices"][0]["message"]["role"] == "assistant"

    server_stop(profile=profile, by=None)
    run_until(sup, server, {State.STOPPED}, timeout=30)
    assert server.pid is None
    assert not psutil.pid_exists(pid)
    assert group_members(pid) == []
    assert health_status(profile.port) is None
    log_text = server_log_path(profile.pk).read_text()
    assert "GET /health" in log_text and "--model" in log_text


CRASH = "import sys; print('boom: cannot load the weights', flush=True); sys.exit(1)"


def test_crash_at_start_goes_through_backoff_to_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    profile = make_profile(str(folder))
    policy = Policy.from_settings(backoff_base=0.05, fatal_after=3, failure_window=60)
    sup = Supervisor(host=RealHost(), policy=policy, argv_builder=lambda p: [sys.executable, "-c", CRASH])
    server = server_start(profile=profile, by=None)
    run_until(sup, server, {State.FATAL}, timeout=60)

    moves = [
        (e.from_state, e.to_state)
        for e in ServerEvent.objects.filter(server=server, kind=ServerEvent.Kind.TRANSITION).order_by("id")
    ]
    assert moves.count(("starting", "backoff")) == 3
    assert moves.count(("backoff", "starting")) == 2
    assert moves[-1] == ("backoff", "fatal")
    assert server.last_exit_code == 1
    assert server.restart_count == 2
    assert "exit code 1" in server.last_error
    assert "boom: cannot load the weights" in server.last_error
    # fatal stays fatal: no more attempts
    for _ in range(5):
        sup.tick()
        time.sleep(0.06)
    server.refresh_from_db()
    assert server.state == State.FATAL and server.pid is None


def test_server_dying_later_is_restarted_and_counted(tiny_model: Path) -> None:
    profile = make_profile(str(tiny_model))
    sup = Supervisor(host=RealHost(), policy=Policy.from_settings(start_timeout=120, backoff_base=0.1))
    server = server_start(profile=profile, by=None)
    run_until(sup, server, {State.RUNNING}, timeout=120)
    for expected in (1, 2):
        old_pid = server.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        run_until(sup, server, {State.BACKOFF}, timeout=30)
        assert server.last_exit_code == -signal.SIGKILL
        run_until(sup, server, {State.RUNNING}, timeout=120)
        assert server.pid != old_pid
        assert server.restart_count == expected
        assert health_status(profile.port) == 200
    server_stop(profile=profile, by=None)
    run_until(sup, server, {State.STOPPED}, timeout=30)


@pytest.mark.parametrize("case", ["port-taken", "model-missing", "too-large"])
def test_refused_starts_spawn_nothing(tiny_model: Path, case: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    model = str(tiny_model)
    port = None
    headroom = 0
    if case == "port-taken":
        port = listener.getsockname()[1]
    elif case == "model-missing":
        model = "/nonexistent/models/Qwen3-4B-4bit"
    else:
        headroom = psutil.virtual_memory().available + 1024**3
    profile = make_profile(model, port)
    log_path = server_log_path(profile.pk)  # profile ids repeat between tests; compare sizes
    log_size = log_path.stat().st_size if log_path.exists() else 0
    children_before = {child.pid for child in psutil.Process().children(recursive=True)}  # e.g. the test browser
    sup = Supervisor(host=RealHost(), policy=Policy.from_settings(memory_headroom=headroom))
    server = server_start(profile=profile, by=None)
    try:
        run_until(sup, server, {State.FATAL}, timeout=10)
    finally:
        listener.close()
    expected = {
        "port-taken": f"Port {port} on 127.0.0.1 is already in use by {psutil.Process().name()} (PID {os.getpid()})",
        "model-missing": "The model folder /nonexistent/models/Qwen3-4B-4bit is not on this machine",
        "too-large": "The model does not fit in memory: it needs about",
    }[case]
    assert expected in server.last_error
    if case == "too-large":
        assert "kept free as headroom" in server.last_error
    assert server.pid is None
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= children_before
    assert (log_path.stat().st_size if log_path.exists() else 0) == log_size, "nothing spawned, nothing logged"


def test_usage_counts_the_children_and_a_group_signal_ends_them_all(tmp_path: Path) -> None:
    host = RealHost()
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    process = host.spawn([sys.executable, "-c", script], log_path=tmp_path / "x.log")
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(process.pid).children()) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child = psutil.Process(process.pid).children()[0]
        usage = host.usage(process)
        assert usage is not None
        own = psutil.Process(process.pid).memory_info().rss
        assert usage[0] >= own + child.memory_info().rss * 0.9
        assert os.getpgid(child.pid) == process.pid, "a new session: the server leads its own group"
    finally:
        host.signal(process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while process.alive() or (psutil.pid_exists(child.pid) and child.status() != psutil.STATUS_ZOMBIE):
        assert time.monotonic() < deadline, "the group signal reached the child too"
        time.sleep(0.02)


def test_a_frozen_server_turns_unhealthy_and_is_replaced(tiny_model: Path) -> None:
    profile = make_profile(str(tiny_model))
    fast = {"health_interval": 0.2, "health_timeout": 0.2, "stop_timeout": 0.5, "backoff_base": 0.1}
    policy = Policy.from_settings(start_timeout=120, **fast)
    sup = Supervisor(host=RealHost(), policy=policy)
    server = server_start(profile=profile, by=None)
    run_until(sup, server, {State.RUNNING}, timeout=120)
    frozen = server.pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)  # alive, holding its port, answering nothing
    run_until(sup, server, {State.UNHEALTHY}, timeout=30)
    run_until(sup, server, {State.BACKOFF}, timeout=30)
    assert server.last_exit_code == -signal.SIGKILL, "SIGTERM cannot reach a frozen process; SIGKILL did"
    run_until(sup, server, {State.RUNNING}, timeout=120)
    assert server.pid != frozen and not psutil.pid_exists(frozen)
    assert health_status(profile.port) == 200
    causes = list(
        ServerEvent.objects.filter(server=server, to_state__in=["unhealthy", "backoff"]).values_list("cause", flat=True)
    )
    assert causes == ["health", "health"]
    server_stop(profile=profile, by=None)
    run_until(sup, server, {State.STOPPED}, timeout=30)


def broken_copy(tiny_model: Path, target: Path, how: str) -> Path:
    """The tiny model, made unloadable the way real downloads go wrong."""
    shutil.copytree(tiny_model, target)
    if how == "unknown-architecture":
        config = json.loads((target / "config.json").read_text())
        config.update(model_type="frobnicator", architectures=["FrobnicatorForCausalLM"])
        (target / "config.json").write_text(json.dumps(config))
    else:
        with open(target / "model.safetensors", "r+b") as weights:
            weights.truncate(weights.seek(0, 2) // 2)  # an interrupted download
    return target


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("unknown-architecture", "Model type frobnicator not supported."),
        ("truncated-weights", "Perhaps an incomplete download or corrupt file?"),
    ],
)
def test_a_model_that_cannot_load_ends_fatal_in_seconds(tiny_model: Path, tmp_path: Path, how: str, error: str) -> None:
    profile = make_profile(str(broken_copy(tiny_model, tmp_path / how, how)))
    # mlx-lm's server stays up and answers /health with 503 after such a load: waiting for the start
    # timeout would make three attempts take three timeouts. On a quiet machine each attempt takes
    # the ~2 s mlx_lm needs to start; the bound is one timeout because the machine may be loaded.
    policy = Policy.from_settings(start_timeout=60, fatal_after=3, backoff_base=0.1, failure_window=1)
    sup = Supervisor(host=RealHost(), policy=policy)
    server = server_start(profile=profile, by=None)
    started = time.monotonic()
    run_until(sup, server, {State.FATAL}, timeout=170)
    took = time.monotonic() - started
    print(f"{how}: fatal after {took:.1f} s")
    assert took < policy.start_timeout, f"three failed starts took {took:.0f} s"

    assert "Gave up after 3 failed starts in a row" in server.last_error
    assert server.last_error.count(error) >= 3, "each attempt says what failed, from the log"
    assert server.pid is None
    assert server_processes(profile.port) == []
    failed = ServerEvent.objects.filter(server=server, from_state="starting", to_state="backoff")
    assert failed.count() == 3
    for event in failed:
        assert error in event.message
        assert "generation thread died" in event.message or "GET /health answered 503" in event.message


def test_a_running_server_whose_generation_thread_dies_is_restarted(tiny_model: Path) -> None:
    """mlx-lm 0.32.2 validates top_k only as >= 0; in its batched path, sampling (temperature > 0)
    with a top_k larger than the vocabulary raises inside the generation thread, which then dies
    while the process stays up."""
    profile = make_profile(str(tiny_model))
    policy = Policy.from_settings(start_timeout=120, health_interval=0.5, backoff_base=0.1)
    sup = Supervisor(host=RealHost(), policy=policy)
    server = server_start(profile=profile, by=None)
    run_until(sup, server, {State.RUNNING}, timeout=120)
    first = server.pid
    assert first is not None

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{profile.port}/v1", api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.APIError):
        client.completions.create(
            model="default_model", prompt="hello", max_tokens=2, temperature=1.0, extra_body={"top_k": 100_000}
        )
    assert health_status(profile.port) == 503, "alive, but it can never answer again"
    assert psutil.pid_exists(first)

    run_until(sup, server, {State.BACKOFF}, timeout=30)
    assert "GET /health answered 503" in server.last_error
    assert "top_k" in server.last_error, "the log's error line says what killed it"
    run_until(sup, server, {State.RUNNING}, timeout=120)
    assert server.pid != first and not psutil.pid_exists(first)
    assert server.restart_count == 1
    answer = client.completions.create(model="default_model", prompt="hello", max_tokens=1)
    assert answer.choices
    server_stop(profile=profile, by=None)
    run_until(sup, server, {State.STOPPED}, timeout=30)
