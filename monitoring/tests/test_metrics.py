"""`/metrics`: who may read it, what it says, and that Prometheus' own tools accept it
(promtool from Debian's prometheus package) and the Grafana dashboard asks only for what it says."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User, UserStatus
from conftest import PASSWORD
from library.models import Download, DownloadState
from monitoring.collector import ManagerCollector
from profiles.models import ServerProfile
from servers.models import ServerState, SystemSample
from servers.tests.factories import set_server
from testing.nodes import set_node

DASHBOARD = Path(settings.BASE_DIR) / "docs" / "grafana-dashboard.json"
# The download families for three nodes (HERE is this machine's node), as they have always been
# written: every node, with zeros where it downloads nothing, in the order of the node's name.
EXPECTED_DOWNLOADS = """\
# HELP mlxm_downloads_in_flight Downloads queued or running.
# TYPE mlxm_downloads_in_flight gauge
mlxm_downloads_in_flight{node="HERE",state="queued"} 1.0
mlxm_downloads_in_flight{node="HERE",state="downloading"} 1.0
mlxm_downloads_in_flight{node="HERE-b",state="queued"} 0.0
mlxm_downloads_in_flight{node="HERE-b",state="downloading"} 0.0
mlxm_downloads_in_flight{node="HERE-c",state="queued"} 1.0
mlxm_downloads_in_flight{node="HERE-c",state="downloading"} 0.0
# HELP mlxm_downloads_in_flight_bytes Bytes fetched so far by the downloads in flight.
# TYPE mlxm_downloads_in_flight_bytes gauge
mlxm_downloads_in_flight_bytes{node="HERE"} 300.0
mlxm_downloads_in_flight_bytes{node="HERE-b"} 0.0
mlxm_downloads_in_flight_bytes{node="HERE-c"} 0.0
# HELP mlxm_downloads_in_flight_size_bytes Total size of the downloads in flight, where known.
# TYPE mlxm_downloads_in_flight_size_bytes gauge
mlxm_downloads_in_flight_size_bytes{node="HERE"} 1000.0
mlxm_downloads_in_flight_size_bytes{node="HERE-b"} 0.0
mlxm_downloads_in_flight_size_bytes{node="HERE-c"} 200.0
"""


def basic(email: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def installation(make_profile: Callable[..., ServerProfile], admin_user: User) -> dict[str, ServerProfile]:
    """One running server, one fatal one, a download halfway, a heartbeat and a system sample."""
    running = make_profile("Qwen fast", by=admin_user)
    fatal = make_profile("broken", by=admin_user)
    set_server(running, ServerState.RUNNING, restart_count=2, rss_bytes=1_500_000_000, cpu_percent=50.0)
    set_server(fatal, ServerState.FATAL, restart_count=5, rss_bytes=None)
    Download.objects.create(
        repo_id="mlx-community/A", state=DownloadState.DOWNLOADING, bytes_done=300, bytes_total=1000
    )
    Download.objects.create(repo_id="mlx-community/B", state=DownloadState.QUEUED)
    Download.objects.create(repo_id="mlx-community/C", state=DownloadState.COMPLETED, bytes_done=5, bytes_total=5)
    set_node(pid=1, heartbeat_at=timezone.now() - timedelta(seconds=4))
    SystemSample.objects.create(
        taken_at=timezone.now(), memory_total=64_000_000_000, memory_available=40_000_000_000, memory_used_by_servers=1
    )
    return {"running": running, "fatal": fatal}


class DownloadFigures:
    """Only the download families of /metrics, as the scrape writes them."""

    def collect(self) -> Iterator[Metric]:
        return ManagerCollector().download_metrics()


def download_exposition() -> tuple[str, int]:
    """The download families' text and the number of queries it took."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DownloadFigures())
    with CaptureQueriesContext(connection) as queries:
        text = generate_latest(registry).decode()
    return text, len(queries.captured_queries)


def test_the_download_figures_take_as_many_queries_for_three_nodes_as_for_one(db: None) -> None:
    here = set_node()
    Download.objects.create(repo_id="m/A", node=here, state=DownloadState.DOWNLOADING, bytes_done=300, bytes_total=1000)
    Download.objects.create(repo_id="m/B", node=here, state=DownloadState.QUEUED)
    Download.objects.create(repo_id="m/C", node=here, state=DownloadState.COMPLETED, bytes_done=5, bytes_total=5)
    _, one_node = download_exposition()
    set_node(f"{here.name}-b")  # downloads nothing: still reported, with zeros
    third = set_node(f"{here.name}-c")
    Download.objects.create(repo_id="m/D", node=third, state=DownloadState.QUEUED, bytes_total=200)
    Download.objects.create(repo_id="m/E", node=third, state=DownloadState.FAILED, bytes_done=7, bytes_total=9)
    text, three_nodes = download_exposition()
    assert three_nodes == one_node
    assert text == EXPECTED_DOWNLOADS.replace("HERE", here.name)


# --- who may read it ---


def test_nobody_gets_401_with_a_basic_challenge(db: None) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_a_member_gets_403_by_session_and_by_password(user_client: Client, approved_user: User) -> None:
    assert user_client.get("/metrics").status_code == 403
    assert Client().get("/metrics", headers=basic(approved_user.email, PASSWORD)).status_code == 403


def test_wrong_password_is_401_and_counts_towards_the_lockout(admin_user: User, settings: object) -> None:
    limit = settings.AXES_FAILURE_LIMIT  # type: ignore[attr-defined]
    for _ in range(limit - 1):
        assert Client().get("/metrics", headers=basic(admin_user.email, "wrong")).status_code == 401
    assert Client().get("/metrics", headers=basic(admin_user.email, "wrong")).status_code == 429
    # Locked out now (django-axes answers 429): even the right password is refused.
    assert Client().get("/metrics", headers=basic(admin_user.email, PASSWORD)).status_code == 429


def test_a_pending_account_cannot_read_it(make_user: Callable[..., User]) -> None:
    pending = make_user("new@example.com", status=UserStatus.PENDING)
    assert Client().get("/metrics", headers=basic(pending.email, PASSWORD)).status_code in (401, 403)


@pytest.mark.parametrize(
    "credentials",
    ["%%%not-base64", "\xe9\xe9\xe9\xe9", base64.b64encode(b"\xff\xfe:password").decode()],
    ids=["not-base64", "not-ascii", "not-utf8"],
)
def test_garbage_credentials_are_401_not_500(db: None, credentials: str) -> None:
    response = Client().get("/metrics", headers={"Authorization": f"Basic {credentials}"})
    assert response.status_code == 401


def test_an_administrator_reads_it_by_session_and_by_password(
    admin_client: Client, admin_user: User, installation: dict[str, ServerProfile]
) -> None:
    by_session = admin_client.get("/metrics")
    by_password = Client().get("/metrics", headers=basic(admin_user.email, PASSWORD))
    assert by_session.status_code == by_password.status_code == 200
    assert by_session["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"mlxm_server_up" in by_password.content


# --- what it says ---


def test_it_reports_servers_downloads_supervisor_and_memory(
    admin_client: Client, installation: dict[str, ServerProfile]
) -> None:
    found = samples(admin_client.get("/metrics").content.decode())
    node = settings.MLXM_NODE_NAME

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert value("mlxm_server_up", profile="Qwen fast", node=node) == 1
    assert value("mlxm_server_up", profile="broken", node=node) == 0
    assert value("mlxm_server_state", profile="broken", node=node, state="fatal") == 1
    assert value("mlxm_server_state", profile="broken", node=node, state="running") == 0
    assert value("mlxm_server_resident_memory_bytes", profile="Qwen fast", node=node) == 1_500_000_000
    assert value("mlxm_server_cpu_usage_ratio", profile="Qwen fast", node=node) == 0.5
    assert value("mlxm_server_health_latency_seconds", profile="Qwen fast", node=node) == pytest.approx(0.0035)
    assert value("mlxm_server_restarts_total", profile="broken", node=node) == 5
    assert ("mlxm_server_resident_memory_bytes", (("node", node), ("profile", "broken"))) not in found
    assert value("mlxm_downloads_in_flight", node=node, state="downloading") == 1
    assert value("mlxm_downloads_in_flight", node=node, state="queued") == 1
    assert value("mlxm_downloads_in_flight_bytes", node=node) == 300
    assert value("mlxm_downloads_in_flight_size_bytes", node=node) == 1000
    assert 4 <= value("mlxm_supervisor_heartbeat_age_seconds", node=node) < 60
    assert value("mlxm_system_memory_available_bytes", node=node) == 40_000_000_000


def test_labels_with_quotes_and_newlines_are_escaped(
    admin_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    set_server(make_profile('evil"} 1\nmlxm_fake 2'), ServerState.RUNNING)
    text = admin_client.get("/metrics").content.decode()
    assert "mlxm_fake" not in {family.name for family in text_string_to_metric_families(text)}


@pytest.mark.debian
def test_promtool_accepts_it(admin_client: Client, installation: dict[str, ServerProfile]) -> None:
    text = admin_client.get("/metrics").content
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


# --- the Grafana dashboard ---


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [var["query"]["query"] for var in dashboard["templating"]["list"]]
    return exprs


def as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they stand for, so promtool can parse the query."""
    expr = expr.replace("$__rate_interval", "5m")
    return re.sub(r"\$\w+", ".*", expr)


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert dashboard["panels"] and all("gridPos" in panel and "id" in panel for panel in dashboard["panels"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])


def exported_names(text: str) -> set[str]:
    """The series names /metrics declares, also for a family with no samples yet (a histogram
    of requests before the first request)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, [""])
    }


def test_every_dashboard_expression_names_only_exported_metrics(
    admin_client: Client, installation: dict[str, ServerProfile]
) -> None:
    exported = exported_names(admin_client.get("/metrics").content.decode())
    for expr in dashboard_expressions():
        named = set(re.findall(r"\bmlxm_\w+", expr))
        assert named, f"{expr!r} names no metric of ours"
        assert named <= exported, f"{expr!r} asks for {named - exported}, which /metrics does not export"


@pytest.mark.debian
def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{n}", "expr": as_promql(e)}
                    for n, e in enumerate(dashboard_expressions())
                    if not e.startswith("label_values(")
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
