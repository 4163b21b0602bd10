"""For the migrations that give existing rows a node: the machine running the migration is the
one they have always lived on (a one-machine install becomes one node, with no new setting)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def move_onto_local_node(app_label: str, model_name: str) -> Any:
    def forwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        if not model.objects.filter(node__isnull=True).exists():
            return
        node_model = apps.get_model("nodes", "Node")
        node, _ = node_model.objects.get_or_create(
            name=settings.MLXM_NODE_NAME, defaults={"url": settings.MLXM_NODE_URL}
        )
        model.objects.filter(node__isnull=True).update(node=node)

    return forwards
