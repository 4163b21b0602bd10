"""Setting a node's supervisor columns in tests, as its supervisor would write them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from nodes.models import Node


def set_node(name: str | None = None, **fields: Any) -> Node:
    """Write `fields` on the node's row (this machine's by default), making it if needed."""
    node, _ = Node.objects.get_or_create(name=name or settings.MLXM_NODE_NAME)
    Node.objects.filter(pk=node.pk).update(**fields)
    node.refresh_from_db()
    return node
