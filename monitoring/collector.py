"""The figures `/metrics` exports, read from the database at each scrape.

The supervisor writes state, memory, CPU, health and heartbeats to the database; reading them
there (a custom collector on a fresh registry per scrape) gives every gunicorn worker the same
answer without prometheus_client's multiprocess mode."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from library.models import Download, DownloadState
from nodes.models import Node
from servers.models import Server, ServerState, SystemSample

IN_FLIGHT = (DownloadState.QUEUED, DownloadState.DOWNLOADING)
SERVER_LABELS = ["profile", "node"]


def node_name() -> str:
    """This machine's node: the label of what has no node of its own (a usage record whose profile is gone)."""
    return str(settings.MLXM_NODE_NAME)


class ManagerCollector:
    """Servers, downloads, supervisors and system memory of every node sharing the database, each
    labelled with its node (any node's /metrics answers for all of them)."""

    def collect(self) -> Iterator[Metric]:
        yield from self.server_metrics()
        yield from self.download_metrics()
        yield from self.supervisor_metrics()
        yield from self.system_metrics()

    def server_metrics(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "mlxm_server_state", "1 for the state the server is in, 0 for the others.", labels=[*SERVER_LABELS, "state"]
        )
        up = GaugeMetricFamily("mlxm_server_up", "1 while the server is running and healthy.", labels=SERVER_LABELS)
        rss = GaugeMetricFamily(
            "mlxm_server_resident_memory_bytes", "Resident memory of the server process.", labels=SERVER_LABELS
        )
        cpu = GaugeMetricFamily(
            "mlxm_server_cpu_usage_ratio", "CPU use of the server process (1 = one core).", labels=SERVER_LABELS
        )
        health = GaugeMetricFamily(
            "mlxm_server_health_latency_seconds", "Duration of the last /health probe.", labels=SERVER_LABELS
        )
        restarts = CounterMetricFamily(
            "mlxm_server_restarts", "Restarts of the server by the supervisor.", labels=SERVER_LABELS
        )
        for server in Server.objects.select_related("profile__node").order_by("profile__name"):
            labels = [server.profile.name, server.profile.node.name]
            for value in ServerState.values:
                state.add_metric([*labels, value], 1.0 if server.state == value else 0.0)
            up.add_metric(labels, 1.0 if server.state == ServerState.RUNNING else 0.0)
            restarts.add_metric(labels, float(server.restart_count))
            if server.state in (ServerState.STOPPED, ServerState.FATAL):
                continue  # no process: no memory, CPU or probe figures
            if server.rss_bytes is not None:
                rss.add_metric(labels, float(server.rss_bytes))
            if server.cpu_percent is not None:
                cpu.add_metric(labels, server.cpu_percent / 100.0)
            if server.last_health_ms is not None:
                health.add_metric(labels, server.last_health_ms / 1000.0)
        yield from (state, up, rss, cpu, health, restarts)

    def download_metrics(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "mlxm_downloads_in_flight", "Downloads queued or running.", labels=["node", "state"]
        )
        done = GaugeMetricFamily(
            "mlxm_downloads_in_flight_bytes", "Bytes fetched so far by the downloads in flight.", labels=["node"]
        )
        size = GaugeMetricFamily(
            "mlxm_downloads_in_flight_size_bytes",
            "Total size of the downloads in flight, where known.",
            labels=["node"],
        )
        for node in Node.objects.order_by("name"):
            ours = Download.objects.filter(node=node)
            for value in IN_FLIGHT:
                in_flight.add_metric([node.name, value], float(ours.filter(state=value).count()))
            sums = ours.filter(state__in=IN_FLIGHT).aggregate(done=Sum("bytes_done"), size=Sum("bytes_total"))
            done.add_metric([node.name], float(sums["done"] or 0))
            size.add_metric([node.name], float(sums["size"] or 0))
        yield from (in_flight, done, size)

    def supervisor_metrics(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "mlxm_supervisor_heartbeat_age_seconds",
            "Seconds since the node's supervisor's last heartbeat.",
            labels=["node"],
        )
        now = timezone.now()
        for node in Node.objects.filter(heartbeat_at__isnull=False).only("name", "heartbeat_at"):
            if node.heartbeat_at is not None:
                age.add_metric([node.name], (now - node.heartbeat_at).total_seconds())
        yield age

    def system_metrics(self) -> Iterator[Metric]:
        gauges = [
            GaugeMetricFamily("mlxm_system_memory_total_bytes", "Physical memory of the machine.", labels=["node"]),
            GaugeMetricFamily(
                "mlxm_system_memory_available_bytes", "Memory available to new processes.", labels=["node"]
            ),
            GaugeMetricFamily(
                "mlxm_system_memory_servers_bytes", "Resident memory of all model servers.", labels=["node"]
            ),
        ]
        sampled = False
        for node in Node.objects.order_by("name"):
            sample = SystemSample.objects.filter(node=node).order_by("-taken_at").first()
            if sample is None:
                continue
            sampled = True
            for gauge, value in zip(
                gauges, (sample.memory_total, sample.memory_available, sample.memory_used_by_servers), strict=True
            ):
                gauge.add_metric([node.name], float(value))
        if sampled:
            yield from gauges
