"""Gateway requests measured, with real parts: the `openai` client against `/v1/` of the app under
gunicorn, a real `mlx_lm.server` run by a real supervisor, and a real Prometheus scraping with an
API key (of an account granted `gateway.read_metrics`, not an administrator) in its scrape config."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from django.contrib.auth.models import Permission

from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import server_start
from servers.states import State
from testing.net import free_port
from testing.prometheus import PrometheusServer
from testing.supervisor import SupervisorProcesses, wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx


def test_prometheus_counts_gateway_requests(
    supervisor_process: SupervisorProcesses,
    tiny_model: Path,
    web_server: WebServer,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    supervisor_process.start()
    member = make_user("member@example.com")
    profile = ServerProfile.objects.create(
        name=f"tiny-{free_port()}", model=str(tiny_model), port=free_port(), created_by=member
    )
    server_start(profile=profile, by=member)
    wait_for(lambda: Server.objects.get(profile=profile).state == State.RUNNING, timeout=150, what="the server")
    supervisor_process.remember_servers()
    reader = make_user("grafana@example.com")
    reader.user_permissions.add(Permission.objects.get(content_type__app_label="gateway", codename="read_metrics"))
    scrape_key = key_create(user=reader, name="prometheus").secret
    web_server.start()

    client = openai.OpenAI(
        base_url=f"{web_server.url}/v1",
        api_key=key_create(user=member, name="laptop").secret,
        max_retries=0,
        timeout=60,
    )
    for _ in range(3):
        client.chat.completions.create(model=profile.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    stream = client.chat.completions.create(
        model=profile.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert list(stream)

    request = urllib.request.Request(f"{web_server.url}/metrics", headers={"Authorization": f"Bearer {scrape_key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    prometheus = PrometheusServer(
        tmp_path / "prometheus",
        target=f"127.0.0.1:{web_server.port}",
        credentials={"authorization": {"type": "Bearer", "credentials": scrape_key}},
    ).start()
    try:
        ok_requests = f'sum(mlxm_gateway_requests_total{{model="{profile.name}", status="200"}})'
        wait_for(
            lambda: prometheus.query(ok_requests).get("") == 4.0,
            timeout=90,
            interval=1.0,
            what="Prometheus to count the 4 gateway requests",
        )
        assert prometheus.query("mlxm_server_up").get(profile.name) == 1.0
        ttft = f'sum(mlxm_gateway_time_to_first_token_seconds_count{{model="{profile.name}"}})'
        assert prometheus.query(ttft).get("") == 4.0
        assert prometheus.query(f'sum(mlxm_gateway_completion_tokens_total{{model="{profile.name}"}})')[""] > 0
    except AssertionError:
        print(f"targets: {prometheus.target_health()}\n{prometheus.output()[-3000:]}")
        raise
    finally:
        prometheus.stop()
