"""The supervisor's bookkeeping beside the servers' states: health and usage written in batches,
samples and their pruning, the Hugging Face cache's size. Each function does one write; the
supervisor's loop (`Supervisor.sample`, `Supervisor.prune`) decides when."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from library.local import local_models
from nodes.models import Node
from nodes.services import node_publish_models
from servers.logs import server_log_path
from servers.models import Server, ServerSample, SystemSample
from servers.signals import prune_due
from servers.supervisor import logfile
from servers.supervisor.host import Host, Process
from servers.supervisor.policy import Policy

HEALTH_COLUMNS = ("last_health_at", "last_health_ms", "health_failures")
USAGE_COLUMNS = ("rss_bytes", "cpu_percent")
Usage = tuple[int, float]  # resident bytes, CPU percent


def save_columns(servers: Sequence[Server], columns: Sequence[str]) -> None:
    """Write the same columns of many servers: one UPDATE per row, in one transaction (one commit).
    `bulk_update` would cost four times as much for the CASE it builds (docs/performance.md)."""
    if not servers:
        return
    with transaction.atomic():
        for server in servers:
            Server.objects.filter(pk=server.pk).update(**{name: getattr(server, name) for name in columns})


def usages_measure(host: Host, processes: Mapping[int, Process]) -> dict[int, Usage]:
    """Memory and CPU of each live process, by server id (a process gone meanwhile is left out)."""
    usages: dict[int, Usage] = {}
    for pk, process in processes.items():
        if process.alive() and (usage := host.usage(process)) is not None:
            usages[pk] = usage
    return usages


def samples_write(
    *, node: Node, host: Host, at: datetime, usages: Mapping[int, Usage], servers: Mapping[int, Server]
) -> int:
    """One sample per measured server and one of the system; the servers' own rows where their
    figures changed. Returns the memory available, for the heartbeat."""
    changed: list[Server] = []  # a row that says so already is not written again
    for pk, (rss, cpu) in usages.items():
        server = servers[pk]
        if (server.rss_bytes, server.cpu_percent) != (rss, cpu):
            server.rss_bytes, server.cpu_percent = rss, cpu
            changed.append(server)
    total, available = host.memory()
    swap_total, swap_used = host.swap()
    ServerSample.objects.bulk_create(
        ServerSample(server_id=pk, taken_at=at, rss_bytes=rss, cpu_percent=cpu) for pk, (rss, cpu) in usages.items()
    )
    save_columns(changed, USAGE_COLUMNS)
    SystemSample.objects.create(
        node=node,
        taken_at=at,
        memory_total=total,
        memory_available=available,
        memory_used_by_servers=sum(rss for rss, _cpu in usages.values()),
        swap_total=swap_total,
        swap_used=swap_used,
    )
    return available


def logs_rotate(profile_ids: Iterable[int], policy: Policy) -> None:
    """Rotate the logs of running servers that grew past their limit (copy, then truncate)."""
    for profile_id in profile_ids:
        logfile.rotate_if_large(server_log_path(profile_id), max_bytes=policy.log_max_bytes, backups=policy.log_backups)


def hub_cache_publish(*, node: Node, host: Host, at: datetime) -> None:
    """The cache's size on disk and the models in it, published on this node's row: for the
    System page (walking it in a polled view would block) and for every node's Models page
    (another node cannot read this disk)."""
    size = host.folder_size(Path(settings.HF_HUB_CACHE))
    models = [{"repo_id": model.name, "size": model.size} for model in local_models()]
    node_publish_models(node=node, models=models, cache_bytes=size, now=at)


def samples_prune(*, node: Node, cutoff: datetime, at: datetime) -> None:
    """Forget this node's samples older than `cutoff`, and signal the apps above to clean up
    theirs (`servers.signals.prune_due`), off their request paths."""
    ServerSample.objects.filter(server__profile__node=node, taken_at__lt=cutoff).delete()
    SystemSample.objects.filter(node=node, taken_at__lt=cutoff).delete()
    prune_due.send(sender=Node, now=at)
