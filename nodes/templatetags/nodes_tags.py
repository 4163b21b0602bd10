"""`{% node_select %}`: a node select for forms that act on one node (a download), shown only
when there is more than one node (one Mac needs no choice: the field left out means this node)."""

from __future__ import annotations

from typing import Any

from django import template

from nodes.models import Node

register = template.Library()


@register.inclusion_tag("nodes/_node_select.html", takes_context=True)
def node_select(context: template.Context, label: str = "on") -> dict[str, Any]:
    # One query per rendering, however many rows of a table carry the select.
    cache = context.render_context
    if "nodes_for_select" not in cache:
        nodes = list(Node.objects.order_by("name"))
        cache["nodes_for_select"] = nodes if len(nodes) > 1 else []
    return {"nodes": cache["nodes_for_select"], "label": label}
