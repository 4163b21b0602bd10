"""Two nodes on one machine, all real: for each, a gunicorn web app and a `runsupervisor` with its
own data directory, node name, address and Hugging Face cache; one real PostgreSQL between them
(testing/postgres.py); a real `mlx_lm.server` on the tiny model; real Chromium and `openai`.

- a profile of node b started from node a's dashboard runs, picked up by b's supervisor at once;
- a request to node a's gateway is answered by node b's model server, streamed and not, an
  on-demand model of b is started by b's gateway, and the usage is recorded once, by b, for the
  right person and key;
- a node with the wrong node secret is refused by b;
- b's supervisor killed with kill -9: a's pages show b offline within the stale time, and a new
  supervisor on b adopts the running server (same PID, one process).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import expect

from conftest import PASSWORD, browser_login, call_failed, screenshot
from e2e.conftest import stack_model_servers
from testing.net import free_port
from testing.postgres import PostgresCluster
from testing.stack import NodeStack
from testing.supervisor import health_ok, wait_for
from testing.web import HttpClient, card_facts

pytestmark = [pytest.mark.browser, pytest.mark.mlx]

STALE = 6.0  # MLXM_HEARTBEAT_STALE in these tests: the supervisor beats every 2 s

SEED = """
import json
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
owner = User.objects.create_superuser(email="owner@example.com", password={password!r})
member = User.objects.create_user(email="member@example.com", password={password!r}, status="approved")
profile = ServerProfile.objects.create(name="tiny-b", model={model!r}, port={port}, owner=owner)
ServerProfile.objects.create(name="tiny-b-on-demand", model={model!r}, port={on_demand_port}, on_demand=True)
print(json.dumps({{"profile": profile.pk, "node": profile.node.name, "member": member.pk,
                  "key": key_create(user=member, name="laptop").secret}}))
"""


@dataclass
class Nodes:
    a: NodeStack
    b: NodeStack
    cluster: PostgresCluster
    database: str
    profile_id: int
    port: int
    member_id: int
    key: str

    def sql(self, query: str) -> str:
        return self.cluster.psql(query, database=self.database)

    def server_row(self) -> tuple[str, int | None]:
        state, _, pid = self.sql(
            f"SELECT state, pid FROM servers_server WHERE profile_id = {self.profile_id}"
        ).partition("|")
        return state, int(pid) if pid else None


@pytest.fixture
def nodes(
    postgres_cluster: PostgresCluster, tiny_model: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Nodes]:
    database = f"nodes_{secrets.token_hex(4)}"
    url = postgres_cluster.create_database(database)
    secret = secrets.token_urlsafe(32)
    shared = {"MLXM_HEARTBEAT_STALE": str(STALE), "MLXM_PORT_BASE": str(free_port())}
    a = NodeStack(tmp_path / "a", name="a", database_url=url, secret=secret, extra_env=shared)
    b = NodeStack(tmp_path / "b", name="b", database_url=url, secret=secret, extra_env=shared)
    try:
        a.start()
        b.start()
        port = free_port()
        seed = SEED.format(password=PASSWORD, model=str(tiny_model), port=port, on_demand_port=free_port())
        facts = json.loads(b.manage("shell", "-c", seed).stdout.strip().splitlines()[-1])
        assert facts["node"] == "b", facts  # made on b: b's profile by default
        yield Nodes(a, b, postgres_cluster, database, facts["profile"], port, facts["member"], facts["key"])
    finally:
        for node in (a, b):
            node.stop()
            if call_failed(request):
                print(f"--- node {node.name} ({node.log_path}), last part ---\n{node.log_text()[-5000:]}")
            for process in stack_model_servers(node):
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)


def dashboard_state(client: HttpClient, profile_id: int) -> dict[str, str]:
    return card_facts(client.get("/servers/").text, profile_id)


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def start_from_node_a(nodes: Nodes, page: Any) -> int:
    """The owner signs in at node a and presses Start on b's card; returns the server's PID."""
    browser_login(page, nodes.a.url, "owner@example.com")
    page.wait_for_url("**/servers/")
    card = page.locator(f"#server-card-{nodes.profile_id}")
    expect(card).to_have_attribute("data-state", "stopped")
    card.locator(".btn-start").click()
    expect(card, "b's server did not reach running on a's dashboard").to_have_attribute(
        "data-state", "running", timeout=60_000
    )
    return int(card.locator(".server-pid").inner_text())


def test_start_at_a_requests_at_a_served_by_b_and_a_wrong_secret_refused(
    nodes: Nodes, page: Any, tmp_path: Path
) -> None:
    pid = start_from_node_a(nodes, page)
    screenshot(page, "nodes-a-dashboard-b-running")
    assert [p.pid for p in stack_model_servers(nodes.b)] == [pid], "the server runs under node b"
    assert stack_model_servers(nodes.a) == []
    # Pickup: a's web app recorded the click, b's supervisor began the start (database clocks).
    clicked, picked_up = nodes.sql(
        "SELECT min(created_at) FILTER (WHERE action = 'start'), min(created_at) FILTER (WHERE to_state = 'starting')"
        f" FROM servers_serverevent e JOIN servers_server s ON s.id = e.server_id WHERE s.profile_id = {nodes.profile_id}"
    ).split("|")
    pickup = seconds_between(clicked, picked_up)
    print(f"click -> starting on node b: {pickup * 1000:.0f} ms")
    assert 0 <= pickup < 10, pickup

    # The gateway at a: answered by b's server, streamed and not, with the real openai client.
    client = openai.OpenAI(base_url=f"{nodes.a.url}/v1", api_key=nodes.key, max_retries=0, timeout=60)
    listed = {m.id: m.model_extra for m in client.models.list().data}
    assert listed["tiny-b"] is not None and listed["tiny-b"]["node"] == "b"
    chat = client.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert chat.model == "tiny-b" and chat.usage is not None and chat.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="tiny-b", messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
        )
    )
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    # A stopped on-demand model of b, asked for at a: b's gateway starts it and answers.
    assert listed["tiny-b-on-demand"] is not None and listed["tiny-b-on-demand"]["state"] == "stopped"
    cold = client.completions.create(model="tiny-b-on-demand", prompt="a b c", max_tokens=4)
    assert cold.model == "tiny-b-on-demand" and cold.usage is not None and cold.usage.completion_tokens > 0
    assert len(stack_model_servers(nodes.b)) == 2 and stack_model_servers(nodes.a) == []
    # Usage: three records, written by b, for the member and their key (a wrote none of its own).
    wait_for(lambda: nodes.sql("SELECT count(*) FROM gateway_usagerecord") == "3", timeout=30, what="three usage rows")
    rows = nodes.sql("SELECT user_id, api_key_id IS NOT NULL, status FROM gateway_usagerecord ORDER BY id")
    assert rows.splitlines() == [f"{nodes.member_id}|t|200"] * 3, rows

    # A third web app with the wrong node secret: b refuses what it forwards (401 to c), and c tells
    # its client that the nodes disagree (502), not that the key is bad.
    c = NodeStack(tmp_path / "c", name="c", database_url=nodes.a.database_url, secret="not-the-secret")
    try:
        c.start(supervisor=False)
        wrong = openai.OpenAI(base_url=f"{c.url}/v1", api_key=nodes.key, max_retries=0, timeout=60)
        with pytest.raises(openai.InternalServerError, match="MLXM_NODE_SECRET differs between the nodes"):
            wrong.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    finally:
        c.stop()
    wait_for(lambda: nodes.sql("SELECT count(*) FROM gateway_usagerecord") == "4", timeout=30, what="c's record")
    last = nodes.sql("SELECT user_id, status FROM gateway_usagerecord ORDER BY id DESC LIMIT 1")
    assert last == f"{nodes.member_id}|502", "recorded once, by the node that forwarded it"


def test_kill_9_of_b_supervisor_shows_b_offline_at_a_and_a_new_one_adopts(nodes: Nodes, page: Any) -> None:
    pid = start_from_node_a(nodes, page)
    watcher = HttpClient(nodes.a.url)
    watcher.login("owner@example.com", PASSWORD)
    assert re.search(r'data-node="b"[^>]*data-online="yes"', watcher.get("/servers/").text)

    nodes.b.kill_supervisor()
    killed = time.monotonic()
    wait_for(
        lambda: re.search(r'data-node="b"[^>]*data-online="no"', watcher.get("/servers/").text),
        timeout=STALE + 10,
        what="node a's dashboard to show node b offline",
    )
    print(f"kill -9 -> offline on a's dashboard: {time.monotonic() - killed:.1f} s (stale time {STALE:g} s)")
    assert dashboard_state(watcher, nodes.profile_id)["state"] == "unknown", "b's server is unknown, not stopped"
    assert health_ok(nodes.port), "the model server runs on without its supervisor"

    # A new supervisor on b: adopts the server (same PID, one process), b is online again.
    nodes.b.start_supervisor()
    wait_for(
        lambda: re.search(r'data-node="b"[^>]*data-online="yes"', watcher.get("/servers/").text),
        timeout=60,
        what="node b back online on a's dashboard",
    )
    wait_for(
        lambda: dashboard_state(watcher, nodes.profile_id).get("state") == "running", timeout=60, what="running again"
    )
    assert nodes.server_row() == ("running", pid)
    assert [p.pid for p in stack_model_servers(nodes.b)] == [pid], "adopted, not started again"
    adopted = nodes.sql(
        f"SELECT count(*) FROM servers_serverevent WHERE message = 'Adopted the running process (PID {pid}).'"
    )
    assert adopted == "1"
    starts = nodes.sql(
        "SELECT count(*) FROM servers_serverevent e JOIN servers_server s ON s.id = e.server_id"
        f" WHERE s.profile_id = {nodes.profile_id} AND e.to_state = 'starting'"
    )
    assert starts == "1", "started once, never again"
