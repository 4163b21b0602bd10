"""The node rows: the local one is made on demand, the stale rule, and the migration that puts
what existed before nodes onto the machine running it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from nodes.models import Node
from nodes.selectors import this_node
from nodes.services import node_beat, node_register, node_stop


@pytest.mark.django_db
def test_this_node_is_made_once_from_the_settings(settings: Any) -> None:
    settings.MLXM_NODE_NAME = "studio"
    settings.MLXM_NODE_URL = "http://studio.local:8000"
    first = this_node()
    assert (first.name, first.url) == ("studio", "http://studio.local:8000")
    assert this_node().pk == first.pk
    assert Node.objects.filter(name="studio").count() == 1, list(Node.objects.values_list("name", flat=True))


@pytest.mark.django_db
def test_a_node_is_online_while_it_beats_and_offline_when_stale_or_stopped(settings: Any) -> None:
    settings.MLXM_HEARTBEAT_STALE = 15
    now = timezone.now()
    node = node_register(
        name="mini",
        url="",
        now=now,
        memory_total=16 * 1024**3,
        memory_available=8 * 1024**3,
        memory_for_models=12 * 1024**3,
        versions={"mlx": "1", "mlx-lm": "2", "app": "3"},
    )
    assert node.is_online(now + timedelta(seconds=10))
    assert not node.is_online(now + timedelta(seconds=16))
    node_beat(node=node, now=now + timedelta(seconds=14), memory_available=7 * 1024**3)
    node.refresh_from_db()
    assert node.is_online(now + timedelta(seconds=16))
    assert node.memory_available == 7 * 1024**3
    node_stop(node=node, now=now + timedelta(seconds=15))
    node.refresh_from_db()
    assert not node.is_online(now + timedelta(seconds=16))
    assert not Node(name="never-ran").is_online(now)


@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_existing_profiles_and_downloads_on_the_local_node(settings: Any) -> None:
    settings.MLXM_NODE_NAME = "the-old-mac"
    executor = MigrationExecutor(connection)
    before = [("profiles", "0005_on_demand"), ("library", "0003_delete_any_model_permission")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    profile = old.get_model("profiles", "ServerProfile").objects.create(name="old", model="m/x", port=8123)
    download = old.get_model("library", "Download").objects.create(repo_id="m/x")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    new = executor.loader.project_state(executor.loader.graph.leaf_nodes()).apps
    local = new.get_model("nodes", "Node").objects.get(name="the-old-mac")
    assert new.get_model("profiles", "ServerProfile").objects.get(pk=profile.pk).node_id == local.pk
    assert new.get_model("library", "Download").objects.get(pk=download.pk).node_id == local.pk
