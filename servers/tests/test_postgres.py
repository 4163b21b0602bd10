"""The supervisor on a real PostgreSQL (testing/postgres.py): wake-ups by LISTEN/NOTIFY, riding
out the database going away, and row locks under concurrent Starts.

Every app here runs as `make run` runs it (testing/stack.py: gunicorn and `manage.py
runsupervisor` under honcho) with DATABASE_URL on the cluster, so these tests do not depend on
the database the test process itself uses; the test looks at the database with psycopg.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from servers.supervisor.core import on_grid
from servers.supervisor.daemon import NotifyListener, WakeSocket
from testing.net import free_port
from testing.postgres import PostgresCluster
from testing.stack import Stack
from testing.supervisor import server_processes, wait_for
from testing.web import HttpClient

pytestmark = pytest.mark.debian

PASSWORD = "correct-horse-battery-42"
ADMIN = "admin@example.com"


@dataclass
class PgApp:
    """One database on the cluster and the stacks (web app, supervisor) started on it."""

    url: str
    root: Path
    stacks: list[Stack]

    def stack(self, name: str, *processes: str, **env: str) -> Stack:
        root = self.root / name
        extra = {"DATABASE_URL": self.url, "HF_HOME": str(root / "hf-home"), "MLXM_PORT_BASE": str(free_port())}
        stack = Stack(root, extra_env={**extra, **env}, processes=processes)
        self.stacks.append(stack)
        return stack.start()

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def one(self, query: str, *params: object) -> Any:
        rows = self.sql(query, *params)
        return rows[0][0] if rows else None

    def shell(self, stack: Stack, code: str) -> str:
        return stack.manage("shell", "-v", "0", "-c", code).stdout.strip()

    def admin_and_profile(self, stack: Stack, *, model: str, names: list[str]) -> list[int]:
        """An approved administrator (ADMIN) and one profile per name on `model`; their ids."""
        code = (
            "from accounts.models import User\n"
            "from profiles.models import ServerProfile\n"
            "from testing.net import free_port\n"
            f"owner = User.objects.filter(email={ADMIN!r}).first() or User.objects.create_user("
            f"email={ADMIN!r}, password={PASSWORD!r}, status='approved', is_staff=True, is_superuser=True)\n"
            f"for name in {names!r}:\n"
            f"    print(ServerProfile.objects.create(name=name, model={model!r}, port=free_port(), owner=owner).pk)\n"
        )
        return [int(line) for line in self.shell(stack, code).split()]

    def server(self, profile_id: int) -> tuple[str, int | None]:
        rows = self.sql("SELECT state, pid FROM servers_server WHERE profile_id = %s", profile_id)
        return (rows[0][0], rows[0][1]) if rows else ("stopped", None)

    def wait_state(self, profile_id: int, *states: str, timeout: float = 120.0) -> None:
        wait_for(lambda: self.server(profile_id)[0] in states, timeout=timeout, interval=0.1, what=f"{states}")

    def wait_supervisor(self, *, after: float = 0.0, timeout: float = 60.0) -> None:
        """Until the supervisor's heartbeat is in (and newer than `after`, a time.time())."""
        query = "SELECT count(*) FROM nodes_node WHERE extract(epoch FROM heartbeat_at) > %s"
        wait_for(lambda: self.one(query, after), timeout=timeout, interval=0.2, what="the supervisor's heartbeat")

    def events(self, profile_id: int, condition: str) -> int:
        return int(
            self.one(
                "SELECT count(*) FROM servers_serverevent e JOIN servers_server s ON s.id = e.server_id "
                f"WHERE s.profile_id = %s AND {condition}",
                profile_id,
            )
        )


def login(stack: Stack) -> HttpClient:
    client = HttpClient(stack.url)
    client.login(ADMIN, PASSWORD)
    return client


def end_model_servers(ports: list[int]) -> None:
    for port in ports:
        for process in server_processes(port):
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def pg_app(postgres_cluster: PostgresCluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PgApp]:
    """A fresh database on the session's cluster; every stack started on it is stopped after the test."""
    app = PgApp(url=postgres_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}"), root=tmp_path, stacks=[])
    yield from _stop_after(app, request)


def _stop_after(app: PgApp, request: pytest.FixtureRequest) -> Iterator[PgApp]:
    try:
        yield app
    finally:
        ports = [p for (p,) in _safe_sql(app, "SELECT port FROM profiles_serverprofile")]
        for stack in app.stacks:
            stack.stop()
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                print(f"--- {stack.root.name}'s output, last part ---\n{stack.log_text()[-5000:]}")
        end_model_servers(ports)


def _safe_sql(app: PgApp, query: str) -> list[tuple[Any, ...]]:
    try:
        return app.sql(query)
    except psycopg.Error:
        return []


# --- LISTEN/NOTIFY ---


def test_the_listener_wakes_for_its_own_node_only_and_comes_back_with_the_database(tmp_path: Path) -> None:
    cluster = PostgresCluster().start()
    wake = WakeSocket(tmp_path / "supervisor.sock")
    listener = NotifyListener("studio", {"conninfo": cluster.url})
    try:
        assert listener.connect()
        cluster.psql("SELECT pg_notify('mlxm_wake', 'mini')")
        assert wake.wait(2.0, listener) is False, "a NOTIFY for another node does not end the wait"
        cluster.psql("SELECT pg_notify('mlxm_wake', 'studio')")
        assert wake.wait(60.0, listener) is True, "this node's NOTIFY ends the wait (a timeout returns False)"

        cluster.stop()
        # The connection's end wakes the wait (twice at most: PostgreSQL's goodbye, then EOF).
        wait_for(lambda: wake.wait(60.0, listener) and not listener.connected, timeout=120, what="the loss")
        assert listener.connect() is False, "no database: no LISTEN (the daemon tries again later)"
        cluster.start()
        assert listener.connect() is True
        cluster.psql("SELECT pg_notify('mlxm_wake', 'studio')")
        assert wake.wait(60.0, listener) is True, "listening again after the database came back"
    finally:
        listener.close()
        wake.close()
        cluster.destroy()


POLL = 3600.0  # the supervisor's own look at the database: far beyond any wait below


def test_a_start_on_another_nodes_web_app_reaches_the_supervisor_by_notify(pg_app: PgApp) -> None:
    """The web app runs with another data directory than the supervisor (as on another Mac), so
    its wake-up datagram reaches no one; the supervisor polls once an hour. Only the NOTIFY can
    explain the supervisor acting on the Start within a minute."""
    supervisor = pg_app.stack("node-a", "supervisor", MLXM_SUPERVISOR_POLL=str(POLL))
    pg_app.wait_supervisor()
    web = pg_app.stack("node-b", "web")
    assert web.data_dir != supervisor.data_dir
    # A model that is not there: the supervisor's start ends in `fatal` at once (no model server).
    [profile_id] = pg_app.admin_and_profile(web, model="/nonexistent/model", names=["notify"])
    client = login(web)
    # The supervisor's periodic ticks fall on multiples of POLL; keep clear of the next one.
    if on_grid(time.time(), POLL) - time.time() < 120:
        time.sleep(on_grid(time.time(), POLL) - time.time() + 1)

    asked = time.monotonic()
    answer = client.post(f"/servers/{profile_id}/start/")
    assert answer.status == 302, answer.text[:500]
    pg_app.wait_state(profile_id, "starting", "fatal", timeout=60)
    assert time.monotonic() - asked < POLL / 2
    # Seen at `starting`, the row may not hold the failure yet (CI read it empty once).
    pg_app.wait_state(profile_id, "fatal", timeout=60)
    assert pg_app.events(profile_id, "e.to_state = 'starting'") == 1
    assert "not on this machine" in pg_app.one(
        "SELECT last_error FROM servers_server WHERE profile_id = %s", profile_id
    )


# --- row locks ---


@pytest.mark.mlx
def test_twenty_concurrent_starts_through_gunicorn_make_one_process_and_one_start(
    pg_app: PgApp, tiny_model: Path
) -> None:
    """Twenty people press Start at once, through the real web app on four gunicorn workers (each
    with its own database connection). server_start reads the row with SELECT ... FOR UPDATE, so
    the requests take turns: the first records the start, every later one reads `desired:
    running` and is refused. That it is the lock and not luck is shown by the same twenty Starts
    on twenty connections at once (test_supervisor_process.py, run on PostgreSQL by `make test`):
    without the lock 13 of 20 were accepted. Through gunicorn the requests seldom overlap inside
    the transaction (each worker runs its page views one at a time), so this test, which checks
    the whole path, passed without the lock too."""
    stack = pg_app.stack("node", WEB_CONCURRENCY="4")
    pg_app.wait_supervisor()
    [profile_id] = pg_app.admin_and_profile(stack, model=str(tiny_model), names=["twenty"])
    client = login(stack)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def press_start() -> None:
        barrier.wait()
        statuses.append(client.post(f"/servers/{profile_id}/start/").status)

    threads = [threading.Thread(target=press_start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [302] * 20, statuses
    pg_app.wait_state(profile_id, "running")
    port = pg_app.one("SELECT port FROM profiles_serverprofile WHERE id = %s", profile_id)
    _, pid = pg_app.server(profile_id)
    assert [p.pid for p in server_processes(port)] == [pid], "one mlx_lm.server"
    assert pg_app.events(profile_id, "e.kind = 'action' AND e.action = 'start'") == 1, "one Start recorded"
    assert pg_app.events(profile_id, "e.to_state = 'starting'") == 1


# --- PostgreSQL going away ---


@pytest.fixture
def pg_app_own_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[PgApp, PostgresCluster]]:
    """A cluster of its own (the test stops it; other tests share the session's)."""
    cluster = PostgresCluster().start()
    app = PgApp(url=cluster.url, root=tmp_path, stacks=[])
    try:
        for stacked in _stop_after(app, request):
            yield stacked, cluster
    finally:
        cluster.destroy()


def supervisor_of(stack: Stack) -> psutil.Process:
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children(recursive=True):
        if "runsupervisor" in child.cmdline():
            return child
    raise AssertionError("no runsupervisor under the stack")


@pytest.mark.mlx
def test_postgresql_away_for_ten_seconds_leaves_the_servers_alone_and_the_supervisor_catches_up(
    pg_app_own_cluster: tuple[PgApp, PostgresCluster], tiny_model: Path
) -> None:
    app, cluster = pg_app_own_cluster
    stack = app.stack("node")
    app.wait_supervisor()
    first, second = app.admin_and_profile(stack, model=str(tiny_model), names=["before", "after"])
    client = login(stack)
    assert client.post(f"/servers/{first}/start/").status == 302
    app.wait_state(first, "running")
    _, pid = app.server(first)
    assert pid is not None
    model_server = psutil.Process(pid)
    supervisor = supervisor_of(stack)

    cluster.restart_after(10)
    back = time.time()

    assert model_server.is_running() and model_server.status() != psutil.STATUS_ZOMBIE, "the server kept running"
    assert psutil.Process(pid).create_time() == model_server.create_time(), "the same process, not a new one"
    assert supervisor.is_running(), "the supervisor rode it out"
    app.wait_supervisor(after=back)  # reconnected: its heartbeat is written again
    assert client.post(f"/servers/{second}/start/").status == 302
    app.wait_state(second, "running")
    assert app.server(first) == ("running", pid), "still the same process, recorded as running"
    assert app.events(first, "e.to_state = 'starting'") == 1, "never restarted"
    assert supervisor.is_running() and supervisor_of(stack).pid == supervisor.pid
    log = stack.log_text()
    assert log.count("the database cannot be reached") == 1, "said once, not at every retry"
    assert "the database is back after" in log
