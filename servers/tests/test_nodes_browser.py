"""Two nodes, one of them offline, in a real Chromium: the dashboard groups the servers by node
(the offline node's server shows "Unknown"), the System page lists both nodes, the Models page
lists the other node's models. Screenshots at 1280 and 390 px, light and dark, go to test-artifacts/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, screenshots
from nodes.models import Node
from profiles.models import ServerProfile
from servers.models import Server, ServerState, SystemSample
from testing.nodes import set_node

pytestmark = pytest.mark.browser
GB = 1024**3


def shots(page: Any, name: str) -> None:
    screenshots(page, f"nodes-{name}")


def seed_two_nodes() -> tuple[ServerProfile, ServerProfile]:
    now = timezone.now()
    versions = {"mlx": "0.29.3", "mlx-lm": "0.28.3", "app": "0.1.0"}
    here = set_node(
        heartbeat_at=now,
        started_at=now - timedelta(hours=3),
        pid=4321,
        hostname="mini",
        versions=versions,
        memory_total=32 * GB,
        memory_available=20 * GB,
        memory_for_models=24 * GB,
        url="http://mini.local:8000",
    )
    studio = set_node(
        "studio",
        heartbeat_at=now - timedelta(minutes=3),
        started_at=now - timedelta(days=1),
        pid=777,
        hostname="studio",
        versions=versions,
        memory_total=192 * GB,
        memory_available=60 * GB,
        memory_for_models=144 * GB,
        url="http://studio.local:8000",
        local_models=[{"repo_id": "mlx-community/Qwen3-235B-A22B-4bit", "size": 132 * GB}],
        local_models_at=now,
    )
    for node, total, available in ((here, 32, 20), (studio, 192, 60)):
        SystemSample.objects.create(node=node, taken_at=now, memory_total=total * GB, memory_available=available * GB)
    small = ServerProfile.objects.create(name="qwen-small", model="mlx-community/Qwen3-4B-4bit", port=8301, node=here)
    big = ServerProfile.objects.create(
        name="qwen-big", model="mlx-community/Qwen3-235B-A22B-4bit", port=8302, node=studio
    )
    Server.objects.create(profile=small, state=ServerState.RUNNING, desired_state="running", pid=5001, rss_bytes=3 * GB)
    Server.objects.create(profile=big, state=ServerState.RUNNING, desired_state="running", pid=6001, rss_bytes=130 * GB)
    return small, big


def test_dashboard_system_and_models_pages_with_an_offline_node(live_server: Any, page: Any, admin_user: User) -> None:
    small, big = seed_two_nodes()
    browser_login(page, live_server.url, admin_user.email)

    page.goto(f"{live_server.url}/servers/")
    expect(page.locator('.node-group[data-node="studio"] .node-status')).to_have_text("offline")
    expect(page.locator(f"#server-card-{big.pk} .server-state")).to_have_text("Unknown")
    expect(page.locator(f"#server-card-{small.pk} .server-state")).to_have_text("Running")
    assert "studio is offline" in page.locator('.node-group[data-node="studio"] .supervisor-banner').inner_text()
    assert page.locator("#supervisor-banner").count() == 0, "this Mac's supervisor beats"
    shots(page, "dashboard")

    page.goto(f"{live_server.url}/system/")
    expect(page.locator('#nodes tr[data-node="studio"] .node-state')).to_have_text("offline")
    assert Node.objects.count() == 2
    assert page.locator("#nodes tbody tr").count() == 2
    shots(page, "system")

    page.goto(f"{live_server.url}/models/")
    expect(page.locator('#node-models-studio tr[data-model="mlx-community/Qwen3-235B-A22B-4bit"]')).to_be_visible()
    shots(page, "models")
