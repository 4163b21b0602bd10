"""/metrics with real parts: a real `mlx_lm.server` run by a real supervisor, the app served by
gunicorn with several workers (gunicorn.conf.py), promtool checking the output, and a real
Prometheus server scraping it with credentials in its scrape config."""

from __future__ import annotations

import base64
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from conftest import PASSWORD
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import server_start
from servers.states import State
from testing.net import free_port
from testing.prometheus import PrometheusServer
from testing.supervisor import SupervisorProcesses, wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx


@pytest.fixture
def scraper(make_user: Callable[..., User]) -> User:
    """The account Prometheus scrapes with (an administrator: metrics need that or the permission)."""
    return make_user("prometheus@example.com", admin=True)


def fetch_metrics(base_url: str, user: User) -> str:
    token = base64.b64encode(f"{user.email}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{base_url}/metrics", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return response.read().decode()


def up_values(text: str, profile: str) -> list[float]:
    return [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mlxm_server_up" and s.labels["profile"] == profile
    ]


def test_prometheus_scrapes_a_running_server_through_gunicorn(
    supervisor_process: SupervisorProcesses,
    tiny_model: Path,
    web_server: WebServer,
    scraper: User,
    tmp_path: Path,
) -> None:
    supervisor_process.start()
    profile = ServerProfile.objects.create(name=f"tiny-{free_port()}", model=str(tiny_model), port=free_port())
    server_start(profile=profile, by=scraper)
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what="the server to run")
    supervisor_process.remember_servers()
    web_server.start()

    # Several requests, so more than one gunicorn worker answers: each reads the same database.
    texts = [fetch_metrics(web_server.url, scraper) for _ in range(4)]
    assert all(up_values(text, profile.name) == [1.0] for text in texts)
    check = subprocess.run(["promtool", "check", "metrics"], input=texts[0].encode(), capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    prometheus = PrometheusServer(
        tmp_path / "prometheus",
        target=f"127.0.0.1:{web_server.port}",
        credentials={"basic_auth": {"username": scraper.email, "password": PASSWORD}},
    ).start()
    try:
        wait_for(
            lambda: prometheus.query("mlxm_server_up").get(profile.name) == 1.0,
            timeout=90,
            interval=1.0,
            what=f"Prometheus to report mlxm_server_up=1 for {profile.name}",
        )
        assert prometheus.query('up{job="mlx-manager"}') == {"": 1.0}, prometheus.target_health()
        memory = prometheus.query("mlxm_server_resident_memory_bytes")
        assert memory.get(profile.name, 0) > 0
    except AssertionError:
        print(f"targets: {prometheus.target_health()}\n{prometheus.output()[-3000:]}")
        raise
    finally:
        prometheus.stop()
