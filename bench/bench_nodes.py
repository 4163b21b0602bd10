"""Two nodes on one machine (testing.stack.NodeStack: gunicorn + runsupervisor each, their own data
directory and node name) sharing one real PostgreSQL (testing.postgres), real `mlx_lm.server`
processes on the tiny model.

Interleaved, ROUNDS each, Start pressed at node a's dashboard (the POST htmx sends):
- far: a profile of node b. Pickup is the time from the click's event (written by a's web app) to
  b's supervisor's `starting` transition, both in the database: the wake-up across machines
  (PostgreSQL NOTIFY). Click to running adds the model's load and first token.
- near (baseline): a profile of node a, woken through a's local socket.
Then, with b's model running, a streamed one-token request to node a's /v1/ (forwarded to b)
against the same request to node b's /v1/ (its own model), interleaved: what the hop adds."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from bench.common import EMAIL, PASSWORD, Result, SessionClient, first_byte, paired_difference, summarize
from testing.net import free_port
from testing.postgres import PostgresCluster
from testing.stack import NodeStack

ROUNDS = 5
HOP_ROUNDS = 20

SEED_A = """
import json
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
user = User.objects.create_superuser(email={email!r}, password={password!r})
near = ServerProfile.objects.create(name="near", model={model!r}, port={port})
print(json.dumps({{"near": near.pk, "key": key_create(user=user, name="bench").secret}}))
"""
SEED_B = """
from profiles.models import ServerProfile
print(ServerProfile.objects.create(name="far", model={model!r}, port={port}).pk)
"""
EVENTS = """
SELECT e.action, e.to_state, e.created_at FROM servers_serverevent e JOIN servers_server s ON s.id = e.server_id
WHERE s.profile_id = %s AND e.id > %s ORDER BY e.id
"""


class Database:
    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(url, autocommit=True)

    def state(self, profile_id: int) -> str:
        row = self.connection.execute("SELECT state FROM servers_server WHERE profile_id = %s", [profile_id]).fetchone()
        return str(row[0]) if row else "stopped"

    def last_event(self) -> int:
        row = self.connection.execute("SELECT coalesce(max(id), 0) FROM servers_serverevent").fetchone()
        return int(row[0]) if row else 0

    def wait_state(self, profile_id: int, state: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state(profile_id) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile {profile_id} not {state} after {timeout:g} s")
            time.sleep(0.01)

    def start_timings(self, profile_id: int, after: int) -> tuple[float, float]:
        """(click to starting, click to running) in ms, from the events after event id `after`."""
        times: dict[str, datetime] = {}
        for action, to_state, created_at in self.connection.execute(EVENTS, [profile_id, after]):
            times.setdefault(action or to_state, created_at)
        click = times["start"]
        return (
            (times["starting"] - click).total_seconds() * 1000,
            (times["running"] - click).total_seconds() * 1000,
        )


def _start_and_stop(client: SessionClient, db: Database, profile_id: int) -> tuple[float, float]:
    after = db.last_event()
    if client.press(f"/servers/{profile_id}/start/") != 200:
        raise RuntimeError(f"Start of profile {profile_id} was refused")
    db.wait_state(profile_id, "running")
    timings = db.start_timings(profile_id, after)
    client.press(f"/servers/{profile_id}/stop/")
    db.wait_state(profile_id, "stopped")
    return timings


def run() -> list[Result]:
    from testing.tinymodel import make_tiny_model

    cluster = PostgresCluster().start()
    nodes: list[NodeStack] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mlxm-nodes-bench-") as root:
            model = make_tiny_model(Path(root) / "tiny-llama")
            secret = secrets.token_urlsafe(32)
            for name in ("a", "b"):
                node = NodeStack(Path(root) / name, name=name, database_url=cluster.url, secret=secret)
                node.extra_env["MLXM_PORT_BASE"] = str(free_port())
                nodes.append(node.start())
            a, b = nodes
            far_port = free_port()
            seeded = json.loads(
                a.manage(
                    "shell", "-c", SEED_A.format(email=EMAIL, password=PASSWORD, model=str(model), port=free_port())
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            far = int(b.manage("shell", "-c", SEED_B.format(model=str(model), port=far_port)).stdout.split()[-1])
            client = SessionClient(a.port)
            client.log_in()
            db = Database(cluster.url)
            pickups: dict[str, list[float]] = {"near": [], "far": []}
            runnings: dict[str, list[float]] = {"near": [], "far": []}
            for _ in range(ROUNDS):
                for label, profile_id in (("near", seeded["near"]), ("far", far)):
                    pickup, running = _start_and_stop(client, db, profile_id)
                    pickups[label].append(pickup)
                    runnings[label].append(running)
            hop = _hop(a, b, db, client, far, seeded["key"])
    finally:
        for node in nodes:
            node.stop()
        cluster.destroy()
    return [
        summarize(
            "two nodes: Start at a of b's model, click to b's pickup",
            "ms",
            pickups["far"],
            baseline="a's own model, click to a's pickup (local socket)",
            baseline_samples=pickups["near"],
            goal=1000.0,
        ),
        summarize(
            "two nodes: Start at a of b's model, click to running",
            "ms",
            runnings["far"],
            baseline="a's own model, click to running",
            baseline_samples=runnings["near"],
            note="includes the model's load and first token: the pickup is the nodes' part",
        ),
        hop,
    ]


def _hop(a: NodeStack, b: NodeStack, db: Database, client: SessionClient, far: int, key: str) -> Result:
    client.press(f"/servers/{far}/start/")
    db.wait_state(far, "running")
    headers = {"Authorization": f"Bearer {key}"}
    via_a = httpx.Client(base_url=f"{a.url}/v1", headers=headers, timeout=60)
    at_b = httpx.Client(base_url=f"{b.url}/v1", headers=headers, timeout=60)
    forwarded, direct = [], []
    for _ in range(HOP_ROUNDS):
        forwarded.append(first_byte(via_a, "far", max_tokens=1))
        direct.append(first_byte(at_b, "far", max_tokens=1))
    return paired_difference(
        "two nodes: /v1/ first byte at a for b's model, added by the hop",
        "ms",
        forwarded,
        direct,
        baseline="the same request at node b (interleaved pairs)",
    )
