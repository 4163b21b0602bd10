"""Writes to the nodes: only a node's own supervisor calls these, for its own row."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime

from nodes.models import Node


def node_register(
    *,
    name: str,
    url: str,
    now: datetime,
    memory_total: int,
    memory_available: int,
    memory_for_models: int,
    versions: Mapping[str, str],
) -> Node:
    """At supervisor start: say who we are, where our web app is, and what this machine has."""
    node, _ = Node.objects.update_or_create(
        name=name,
        defaults={
            "url": url,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": now,
            "heartbeat_at": now,
            "stopped_at": None,
            "memory_total": memory_total,
            "memory_available": memory_available,
            "memory_for_models": memory_for_models,
            "versions": dict(versions),
        },
    )
    return node


def node_beat(*, node: Node, now: datetime, memory_available: int | None = None) -> None:
    """The supervisor is alive (and, when it has just sampled it, this much memory is available)."""
    fields: dict[str, object] = {"heartbeat_at": now, "pid": os.getpid()}
    if memory_available is not None:
        fields["memory_available"] = memory_available
    Node.objects.filter(pk=node.pk).update(**fields)


def node_stop(*, node: Node, now: datetime) -> None:
    """After a clean shutdown: say so, so pages need not wait for the heartbeat to go stale."""
    Node.objects.filter(pk=node.pk, pid=os.getpid()).update(stopped_at=now)


def node_publish_models(*, node: Node, models: Sequence[Mapping[str, object]], cache_bytes: int, now: datetime) -> None:
    """The models on this node's disk, for every node's Models page (they cannot read our disk)."""
    Node.objects.filter(pk=node.pk).update(
        local_models=[dict(model) for model in models], hub_cache_bytes=cache_bytes, local_models_at=now
    )
