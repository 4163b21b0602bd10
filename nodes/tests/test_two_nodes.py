"""Two nodes on one machine: two real `runsupervisor` processes, each with its own node name, data
folder and Hugging Face cache, sharing one database (a SQLite file serves two processes on one
machine; PostgreSQL is what several Macs share). Each acts on its own node's servers only, and
a node whose supervisor is killed shows as offline with its servers' state unknown."""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.test import Client

from nodes.models import Node
from profiles.models import ServerProfile
from servers.models import Server, ServerEvent
from servers.services import server_start
from servers.states import State
from testing.net import free_port
from testing.supervisor import SupervisorProcesses, health_ok, wait_for

pytestmark = pytest.mark.mlx
HTMX = {"HX-Request": "true"}


def node_env(tmp_path: Path, name: str) -> dict[str, str]:
    """What makes a second Mac: its own node name, data folder (lock, socket, logs) and HF cache."""
    home = tmp_path / name
    return {"MLXM_NODE_NAME": name, "MLXM_DATA_DIR": str(home / "data"), "HF_HOME": str(home / "hf-home")}


def profile_on(node: Node, model: Path) -> ServerProfile:
    port = free_port()
    return ServerProfile.objects.create(name=f"{node.name}-{port}", model=str(model), port=port, node=node)


def state_of(profile: ServerProfile) -> str:
    return Server.objects.get(profile=profile).state


def parent_of(pid: int | None) -> int | None:
    assert pid is not None
    return psutil.Process(pid).ppid()


def test_each_supervisor_starts_only_its_own_nodes_servers(
    supervisor_process: SupervisorProcesses, tiny_model: Path, tmp_path: Path
) -> None:
    here = supervisor_process.start(env={"MLXM_NODE_NAME": settings.MLXM_NODE_NAME})
    node_a = Node.objects.get(name=settings.MLXM_NODE_NAME)
    node_b = Node.objects.create(name="node-b")  # as its form select would name it: the Mac is not up yet
    ours, theirs = profile_on(node_a, tiny_model), profile_on(node_b, tiny_model)
    server_start(profile=ours, by=None)
    server_start(profile=theirs, by=None)
    wait_for(lambda: state_of(ours) == State.RUNNING, timeout=120, what="node a's own server running")
    supervisor_process.remember_servers()
    assert parent_of(Server.objects.get(profile=ours).pid) == here.pid

    # Node a's supervisor has ticked since (a whole idle interval of heartbeats later) and left b's profile alone.
    def beat_of_a() -> datetime:
        beat = Node.objects.get(pk=node_a.pk).heartbeat_at
        assert beat is not None
        return beat

    then = beat_of_a()
    wait_for(lambda: beat_of_a() >= then + timedelta(seconds=6), timeout=60, what="node a's supervisor to tick again")
    server = Server.objects.get(profile=theirs)
    assert (server.state, server.pid) == (State.STOPPED, None)
    assert not ServerEvent.objects.filter(server=server, kind=ServerEvent.Kind.TRANSITION).exists()

    # Node b's supervisor comes up and starts it; node a's server stays node a's.
    there = supervisor_process.start(env=node_env(tmp_path, "node-b"))
    wait_for(lambda: state_of(theirs) == State.RUNNING, timeout=120, what="node b's server running")
    supervisor_process.remember_servers()
    assert parent_of(Server.objects.get(profile=theirs).pid) == there.pid
    assert parent_of(Server.objects.get(profile=ours).pid) == here.pid
    assert health_ok(theirs.port) and health_ok(ours.port)
    node_b.refresh_from_db()
    assert node_b.versions.get("mlx-lm") and node_b.memory_total and node_b.pid == there.pid


def test_a_killed_nodes_servers_show_as_unknown_and_the_node_offline(
    supervisor_process: SupervisorProcesses,
    tiny_model: Path,
    tmp_path: Path,
    user_client: Client,
    settings: Any,
) -> None:
    settings.MLXM_HEARTBEAT_STALE = 3.0  # the web side's stale time, short for the test
    node_b = Node.objects.create(name="node-b")
    theirs = profile_on(node_b, tiny_model)
    there = supervisor_process.start(env=node_env(tmp_path, "node-b"))
    server_start(profile=theirs, by=None)
    wait_for(lambda: state_of(theirs) == State.RUNNING, timeout=120, what="node b's server running")
    supervisor_process.remember_servers()

    def dashboard() -> str:
        return user_client.get("/servers/", headers=HTMX).content.decode()

    html = dashboard()
    assert re.search(r'data-node="node-b" data-online="yes"', html)
    assert f'id="server-card-{theirs.pk}" data-state="running"' in html

    there.send_signal(signal.SIGKILL)
    there.wait(10)
    wait_for(
        lambda: 'data-node="node-b" data-online="no"' in dashboard(),
        timeout=30,
        interval=0.5,
        what="node b shown as offline",
    )
    html = dashboard()
    assert f'id="server-card-{theirs.pk}" data-state="unknown"' in html
    assert "node-b is offline" in html and "Its servers' state is unknown" in html
    assert health_ok(theirs.port), "its server was not stopped: only nobody watches it now"
    assert state_of(theirs) == State.RUNNING, "the record stays as the supervisor left it"
    system = user_client.get("/system/").content.decode()
    assert re.search(r'<tr data-node="node-b" data-online="no">', system)
