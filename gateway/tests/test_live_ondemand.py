"""Models that start on their first /v1/ request: real `openai` clients against gunicorn, a real
supervisor and real `mlx_lm.server` processes on the tiny model."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
from django.db import connection

from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerEvent
from servers.states import State
from servers.supervisor.core import Policy, Supervisor
from servers.supervisor.host import RealHost
from testing.net import free_port
from testing.supervisor import server_processes, wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx


@pytest.fixture
def gateway_up(
    supervisor_process: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., WebServer]]:
    """Start the supervisor, then gunicorn with the given MLXM_ settings."""
    webs: list[WebServer] = []

    def start(**env: str) -> WebServer:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        supervisor_process.start()
        webs.append(WebServer(tmp_path / "gunicorn.log").start())
        return webs[-1]

    yield start
    supervisor_process.remember_servers()
    for web in webs:
        web.stop()


def client(web: WebServer, user: User, *, timeout: float = 120) -> openai.OpenAI:
    secret = key_create(user=user, name="laptop").secret
    return openai.OpenAI(base_url=web.url + "/v1", api_key=secret, max_retries=0, timeout=timeout)


def ask(oai: openai.OpenAI, model: str) -> str:
    chat = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert chat.model == model
    return chat.choices[0].message.content or ""


def test_ten_concurrent_first_requests_start_one_server_and_all_get_answers(
    gateway_up: Callable[..., WebServer], tiny_model: Path, make_user: Callable[..., User]
) -> None:
    web = gateway_up()
    user = make_user("member@example.com")
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port(), on_demand=True)
    oai = client(web, user)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: ask(oai, "tiny"), range(10)))

    assert len(answers) == 10 and all(isinstance(a, str) for a in answers)
    server = Server.objects.get(profile=profile)
    assert server.state == State.RUNNING and server.started_on_demand
    assert len(server_processes(profile.port)) == 1
    starts = ServerEvent.objects.filter(server=server, kind=ServerEvent.Kind.ACTION, action="start")
    assert [(e.by, e.cause) for e in starts] == [(user, "gateway")]
    assert ServerEvent.objects.filter(server=server, to_state=State.STARTING).count() == 1
    # every request was counted in and out again
    wait_for(lambda: Server.objects.get(profile=profile).in_flight == 0, timeout=10, what="in_flight back to 0")
    assert Server.objects.get(profile=profile).last_used_at is not None


def test_a_start_that_fails_answers_503_with_the_reason_and_fatal_is_not_restarted(
    gateway_up: Callable[..., WebServer], tmp_path: Path, make_user: Callable[..., User]
) -> None:
    web = gateway_up()
    user = make_user("member@example.com")
    ServerProfile.objects.create(name="broken", model=str(tmp_path / "no-such-model"), port=free_port(), on_demand=True)
    oai = client(web, user)

    with pytest.raises(openai.APIStatusError) as failed:
        ask(oai, "broken")
    assert failed.value.status_code == 503
    assert "could not start" in str(failed.value) and "no-such-model" in str(failed.value)
    server = Server.objects.get(profile__name="broken")
    assert server.state == State.FATAL

    with pytest.raises(openai.APIStatusError) as again:
        ask(oai, "broken")
    assert again.value.status_code == 503 and "fatal" in str(again.value)
    assert ServerEvent.objects.filter(server=server, action="start").count() == 1
    assert Server.objects.get(pk=server.pk).state == State.FATAL


def test_a_start_slower_than_the_on_demand_timeout_answers_504(
    gateway_up: Callable[..., WebServer], tiny_model: Path, make_user: Callable[..., User]
) -> None:
    web = gateway_up(MLXM_ON_DEMAND_TIMEOUT="0.2")
    user = make_user("member@example.com")
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port(), on_demand=True)
    oai = client(web, user)

    with pytest.raises(openai.APIStatusError) as slow:
        ask(oai, "tiny")
    assert slow.value.status_code == 504 and "MLXM_ON_DEMAND_TIMEOUT" in str(slow.value)
    # the start goes on: a later request finds it running
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what="tiny to run")
    assert Server.objects.get(profile=profile).desired_state == DesiredState.RUNNING
    assert ask(oai, "tiny") is not None


def test_a_profile_not_on_demand_is_not_started_by_a_request(
    gateway_up: Callable[..., WebServer], tiny_model: Path, make_user: Callable[..., User]
) -> None:
    web = gateway_up()
    user = make_user("member@example.com")
    profile = ServerProfile.objects.create(name="tiny", model=str(tiny_model), port=free_port())
    with pytest.raises(openai.APIStatusError) as refused:
        ask(client(web, user), "tiny")
    assert refused.value.status_code == 503 and "Press Start" in str(refused.value)
    assert Server.objects.filter(profile=profile, desired_state=DesiredState.RUNNING).count() == 0


# --- idle stop: the supervisor's loop in a thread here, with a short idle minute ---


class SupervisorThread:
    """The real reconcile loop and real processes, with the test's policy."""

    def __init__(self, policy: Policy) -> None:
        self.sup = Supervisor(host=RealHost(), policy=policy)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.last_pass_began = 0.0  # when the last finished pass over every server began (time.time())

    def start(self) -> SupervisorThread:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.sup.begin()
            while not self.done.is_set():
                began = time.time()
                self.sup.tick()
                self.last_pass_began = began
                self.done.wait(min(self.sup.seconds_until_next(), 0.05))
            self.sup.begin_shutdown()
            deadline = time.monotonic() + 30
            while self.sup.busy() and time.monotonic() < deadline:
                self.sup.tick()
                time.sleep(0.05)
        finally:
            connection.close()

    def passed(self, moment: float) -> bool:
        """True once a whole pass has begun after `moment`: it saw the world as of then."""
        return self.last_pass_began > moment

    def stop(self) -> None:
        self.done.set()
        self.thread.join(60)


@dataclasses.dataclass
class QuickIdle:
    web: WebServer
    supervisor: SupervisorThread


@pytest.fixture
def quick_idle(tmp_path: Path) -> Iterator[QuickIdle]:
    """Idle minutes of one second; gunicorn as `make run` serves it. Health probes are left out:
    the test freezes a server to stand for a long generation, during which a real server still
    answers GET /health."""
    supervisor = SupervisorThread(Policy.from_settings(idle_minute=1.0, health_interval=3600.0)).start()
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        yield QuickIdle(web=web, supervisor=supervisor)
    finally:
        web.stop()
        supervisor.stop()


def idle_stops(server: Server) -> list[ServerEvent]:
    return list(ServerEvent.objects.filter(server=server, cause="idle", to_state=State.STOPPING))


@pytest.mark.django_db(transaction=True)
def test_idle_stop_after_the_idle_time_but_not_during_a_slow_stream(
    quick_idle: QuickIdle, tiny_model: Path, make_user: Callable[..., User]
) -> None:
    user = make_user("member@example.com")
    profile = ServerProfile.objects.create(
        name="tiny", model=str(tiny_model), port=free_port(), on_demand=True, idle_minutes=2
    )
    oai = client(quick_idle.web, user)
    assert ask(oai, "tiny") is not None
    server = Server.objects.get(profile=profile)
    wait_for(lambda: idle_stops(server), timeout=30, what="the idle stop")
    wait_for(lambda: Server.objects.get(pk=server.pk).state == State.STOPPED, timeout=30, what="stopped")
    assert "2 min idle" in idle_stops(server)[0].message

    # Started again by the next request (never idle meanwhile), then a stream whose server sends
    # nothing for three idle times: frozen before the request reaches it, so it cannot have answered.
    ServerProfile.objects.filter(pk=profile.pk).update(idle_minutes=None)
    assert ask(oai, "tiny") is not None
    pid = Server.objects.get(pk=server.pk).pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    chunks: list[Any] = []

    def read_stream() -> None:
        stream = oai.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=64, stream=True
        )
        chunks.extend(stream)

    reader = threading.Thread(target=read_stream, daemon=True)
    try:
        reader.start()
        wait_for(lambda: Server.objects.get(pk=server.pk).in_flight == 1, timeout=60, what="the stream counted")
        ServerProfile.objects.filter(pk=profile.pk).update(idle_minutes=2)
        three_idle_times_later = time.time() + 3 * 2 * quick_idle.supervisor.sup.policy.idle_minute
        wait_for(lambda: quick_idle.supervisor.passed(three_idle_times_later), timeout=60, what="three idle times")
        assert Server.objects.get(pk=server.pk).state == State.RUNNING, list(
            ServerEvent.objects.filter(server=server).values_list("to_state", "cause", "message")
        )[-4:]
        assert Server.objects.get(pk=server.pk).in_flight == 1
        assert len(idle_stops(server)) == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    reader.join(120)
    assert not reader.is_alive() and chunks
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason in ("stop", "length")
    wait_for(lambda: len(idle_stops(server)) == 2, timeout=30, what="the idle stop after the stream")


# --- making room ---
# The tiny model's server uses ~70 MB, less than the machine's available memory drifts while
# other programs run, so "B fits once A is gone" is shown with the fake host
# (servers/tests/test_supervisor_fake.py); here the headroom is larger than the machine, so nothing
# fits and each stop for room shows in full.


@pytest.fixture
def supervisor_thread(tmp_path: Path) -> Iterator[SupervisorThread]:
    supervisor = SupervisorThread(Policy.from_settings()).start()
    yield supervisor
    supervisor.stop()


def set_headroom(supervisor: SupervisorThread, headroom: int) -> None:
    supervisor.sup.policy = dataclasses.replace(supervisor.sup.policy, memory_headroom=headroom)


@pytest.mark.django_db(transaction=True)
def test_memory_decides_who_runs(
    supervisor_thread: SupervisorThread, tmp_path: Path, tiny_model: Path, make_user: Callable[..., User]
) -> None:
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        user = make_user("member@example.com")
        oai = client(web, user)
        profiles = {
            n: ServerProfile.objects.create(name=n, model=str(tiny_model), port=free_port(), on_demand=True)
            for n in ("a", "b", "c", "d")
        }
        assert ask(oai, "a") is not None
        a = Server.objects.get(profile=profiles["a"])
        set_headroom(supervisor_thread, psutil.virtual_memory().total * 2)

        # B's request stops idle A to make room; B still does not fit: 503 with the numbers
        with pytest.raises(openai.APIStatusError) as full:
            ask(oai, "b")
        assert full.value.status_code == 503
        assert "does not fit in memory" in str(full.value) and "kept free as headroom" in str(full.value)
        wait_for(lambda: Server.objects.get(pk=a.pk).state == State.STOPPED, timeout=30, what="A stopped")
        room = ServerEvent.objects.get(server=a, to_state=State.STOPPING)
        assert (room.cause, room.message) == ("room", "Stopped to make room for b.")

        # A kept running: not stopped for C
        set_headroom(supervisor_thread, 0)
        ServerProfile.objects.filter(pk=profiles["a"].pk).update(keep_running=True)
        assert ask(oai, "a") is not None
        set_headroom(supervisor_thread, psutil.virtual_memory().total * 2)
        with pytest.raises(openai.APIStatusError) as kept:
            ask(oai, "c")
        assert kept.value.status_code == 503 and "does not fit in memory" in str(kept.value)
        assert Server.objects.get(pk=a.pk).state == State.RUNNING

        # started by a person: not stopped for D either
        ServerProfile.objects.filter(pk=profiles["a"].pk).update(keep_running=False)
        Server.objects.filter(pk=a.pk).update(started_on_demand=False)  # as a press of Start leaves it
        with pytest.raises(openai.APIStatusError) as by_hand:
            ask(oai, "d")
        assert by_hand.value.status_code == 503 and "does not fit in memory" in str(by_hand.value)
        assert Server.objects.get(pk=a.pk).state == State.RUNNING
        assert ServerEvent.objects.filter(server=a, cause="room").count() == 1
    finally:
        web.stop()
