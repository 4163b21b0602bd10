"""The figures `/metrics` exports, read from the database at each scrape.

The supervisor writes state, memory, CPU, health and heartbeats to the database; reading them
there (custom collectors on a registry of their own, monitoring.views.REGISTRY) gives every
gunicorn worker the same answer without prometheus_client's multiprocess mode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from library.models import Download, DownloadState
from nodes.models import Node
from servers.models import Server, ServerState, SystemSample
from servers.states import AT_REST

IN_FLIGHT = (DownloadState.QUEUED, DownloadState.DOWNLOADING)
SERVER_LABELS = ["profile", "node"]

Sample = tuple[Sequence[str], float | None]  # label values, value (None: not measured, left out)


def family(
    kind: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    documentation: str,
    labels: Sequence[str],
    samples: Iterable[Sample],
) -> Metric:
    """One gauge or counter family of /metrics with its samples, in their order: what each of the
    collectors yields, so a figure is declared and filled in one expression."""
    metric = kind(name, documentation, labels=list(labels))
    for values, value in samples:
        if value is not None:
            metric.add_metric(list(values), float(value))
    return metric


def node_name() -> str:
    """This machine's node: the label of what has no node of its own (a usage record whose profile is gone)."""
    return str(settings.MLXM_NODE_NAME)


def _divided(value: float | None, by: float) -> float | None:
    return None if value is None else value / by


class ManagerCollector:
    """Servers, downloads, supervisors and system memory of every node sharing the database, each
    labelled with its node (any node's /metrics answers for all of them)."""

    def collect(self) -> Iterator[Metric]:
        yield from self.server_metrics()
        yield from self.download_metrics()
        yield from self.supervisor_metrics()
        yield from self.system_metrics()

    def server_metrics(self) -> Iterator[Metric]:
        servers = [
            ([server.profile.name, server.profile.node.name], server)
            for server in Server.objects.select_related("profile__node").order_by("profile__name")
        ]
        alive = [(labels, server) for labels, server in servers if server.state not in AT_REST]  # have figures
        yield family(
            GaugeMetricFamily,
            "mlxm_server_state",
            "1 for the state the server is in, 0 for the others.",
            [*SERVER_LABELS, "state"],
            (([*labels, state], server.state == state) for labels, server in servers for state in ServerState.values),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_server_up",
            "1 while the server is running and healthy.",
            SERVER_LABELS,
            ((labels, server.state == ServerState.RUNNING) for labels, server in servers),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_server_resident_memory_bytes",
            "Resident memory of the server process.",
            SERVER_LABELS,
            ((labels, server.rss_bytes) for labels, server in alive),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_server_cpu_usage_ratio",
            "CPU use of the server process (1 = one core).",
            SERVER_LABELS,
            ((labels, _divided(server.cpu_percent, 100)) for labels, server in alive),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_server_health_latency_seconds",
            "Duration of the last /health probe.",
            SERVER_LABELS,
            ((labels, _divided(server.last_health_ms, 1000)) for labels, server in alive),
        )
        yield family(
            CounterMetricFamily,
            "mlxm_server_restarts",
            "Restarts of the server by the supervisor.",
            SERVER_LABELS,
            ((labels, server.restart_count) for labels, server in servers),
        )

    def download_metrics(self) -> Iterator[Metric]:
        """Two queries whatever the number of nodes: the nodes, and the downloads in flight
        counted and summed by node and state; a node downloading nothing is reported with zeros."""
        nodes = list(Node.objects.order_by("name").values_list("pk", "name"))
        count: Counter[tuple[int, str]] = Counter()
        done: Counter[int] = Counter()
        size: Counter[int] = Counter()
        for group in (
            Download.objects.filter(state__in=IN_FLIGHT)
            .values("node", "state")
            .annotate(count=Count("pk"), done=Sum("bytes_done"), size=Sum("bytes_total"))
            .order_by()  # the model's ordering would split the groups
        ):
            count[group["node"], group["state"]] = group["count"]
            done[group["node"]] += group["done"] or 0
            size[group["node"]] += group["size"] or 0
        yield family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight",
            "Downloads queued or running.",
            ["node", "state"],
            (([name, state], count[pk, state]) for pk, name in nodes for state in IN_FLIGHT),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight_bytes",
            "Bytes fetched so far by the downloads in flight.",
            ["node"],
            (([name], done[pk]) for pk, name in nodes),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight_size_bytes",
            "Total size of the downloads in flight, where known.",
            ["node"],
            (([name], size[pk]) for pk, name in nodes),
        )

    def supervisor_metrics(self) -> Iterator[Metric]:
        now = timezone.now()
        beats = Node.objects.filter(heartbeat_at__isnull=False).values_list("name", "heartbeat_at")
        yield family(
            GaugeMetricFamily,
            "mlxm_supervisor_heartbeat_age_seconds",
            "Seconds since the node's supervisor's last heartbeat.",
            ["node"],
            (([node], (now - beat_at).total_seconds()) for node, beat_at in beats if beat_at is not None),
        )

    def system_metrics(self) -> Iterator[Metric]:
        newest = [
            (node.name, SystemSample.objects.filter(node=node).order_by("-taken_at").first())
            for node in Node.objects.order_by("name")
        ]
        sampled = [([node], sample) for node, sample in newest if sample is not None]
        if not sampled:  # no supervisor has sampled yet: no memory families at all
            return
        yield family(
            GaugeMetricFamily,
            "mlxm_system_memory_total_bytes",
            "Physical memory of the machine.",
            ["node"],
            ((node, sample.memory_total) for node, sample in sampled),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_system_memory_available_bytes",
            "Memory available to new processes.",
            ["node"],
            ((node, sample.memory_available) for node, sample in sampled),
        )
        yield family(
            GaugeMetricFamily,
            "mlxm_system_memory_servers_bytes",
            "Resident memory of all model servers.",
            ["node"],
            ((node, sample.memory_used_by_servers) for node, sample in sampled),
        )
