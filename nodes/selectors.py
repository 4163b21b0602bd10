"""Reads of the nodes."""

from __future__ import annotations

from django.conf import settings

from nodes.models import Node


def this_node() -> Node:
    """The row of the machine this process runs on (made on first use, so one machine needs no setup)."""
    node, _ = Node.objects.get_or_create(name=settings.MLXM_NODE_NAME, defaults={"url": settings.MLXM_NODE_URL})
    return node


def this_node_id() -> int:
    """The default of every `node` foreign key."""
    return this_node().pk


def all_nodes() -> list[Node]:
    return list(Node.objects.order_by("name"))
