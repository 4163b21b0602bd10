"""The figures `/metrics` exports, read from the database at each scrape.

The supervisor writes state, memory, CPU, health and heartbeats to the database; reading them
there (a custom collector on a fresh registry per scrape) gives every gunicorn worker the same
answer without prometheus_client's multiprocess mode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from library.models import Download, DownloadState
from servers.models import Server, ServerState, SupervisorHeartbeat, SystemSample

IN_FLIGHT = (DownloadState.QUEUED, DownloadState.DOWNLOADING)
Samples = Iterable[tuple[Sequence[str], float]]


def node_name() -> str:
    return str(settings.MLXM_NODE_NAME)


def node_family(
    kind: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    documentation: str,
    labels: Sequence[str],
    samples: Samples,
) -> Metric:
    """A gauge or counter whose samples (label values, value) get this node's name as a last label,
    so that the figures of several nodes in one Prometheus stay apart."""
    node = node_name()
    family = kind(name, documentation, labels=[*labels, "node"])
    for values, value in samples:
        family.add_metric([*values, node], value)
    return family


class ManagerCollector:
    """Servers, downloads, the supervisor and system memory of this installation."""

    def collect(self) -> Iterator[Metric]:
        yield from self.server_metrics()
        yield from self.download_metrics()
        yield from self.supervisor_metrics()
        yield from self.system_metrics()

    def server_metrics(self) -> Iterator[Metric]:
        servers = list(Server.objects.select_related("profile").order_by("profile__name"))
        # No process (stopped or fatal): no memory, CPU or probe figures.
        live = [server for server in servers if server.state not in (ServerState.STOPPED, ServerState.FATAL)]

        def per_server(field: str, scale: float = 1.0) -> Samples:
            return [
                ([server.profile.name], getattr(server, field) * scale)
                for server in live
                if getattr(server, field) is not None
            ]

        yield node_family(
            GaugeMetricFamily,
            "mlxm_server_state",
            "1 for the state the server is in, 0 for the others.",
            ["profile", "state"],
            [
                ([server.profile.name, value], 1.0 if server.state == value else 0.0)
                for server in servers
                for value in ServerState.values
            ],
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_server_up",
            "1 while the server is running and healthy.",
            ["profile"],
            [([server.profile.name], 1.0 if server.state == ServerState.RUNNING else 0.0) for server in servers],
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_server_resident_memory_bytes",
            "Resident memory of the server process.",
            ["profile"],
            per_server("rss_bytes"),
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_server_cpu_usage_ratio",
            "CPU use of the server process (1 = one core).",
            ["profile"],
            per_server("cpu_percent", 1 / 100),
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_server_health_latency_seconds",
            "Duration of the last /health probe.",
            ["profile"],
            per_server("last_health_ms", 1 / 1000),
        )
        yield node_family(
            CounterMetricFamily,
            "mlxm_server_restarts",
            "Restarts of the server by the supervisor.",
            ["profile"],
            [([server.profile.name], float(server.restart_count)) for server in servers],
        )

    def download_metrics(self) -> Iterator[Metric]:
        yield node_family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight",
            "Downloads queued or running.",
            ["state"],
            [([value], float(Download.objects.filter(state=value).count())) for value in IN_FLIGHT],
        )
        sums = Download.objects.filter(state__in=IN_FLIGHT).aggregate(done=Sum("bytes_done"), size=Sum("bytes_total"))
        yield node_family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight_bytes",
            "Bytes fetched so far by the downloads in flight.",
            [],
            [([], float(sums["done"] or 0))],
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_downloads_in_flight_size_bytes",
            "Total size of the downloads in flight, where known.",
            [],
            [([], float(sums["size"] or 0))],
        )

    def supervisor_metrics(self) -> Iterator[Metric]:
        beat = SupervisorHeartbeat.objects.filter(pk=1).first()
        ages: Samples = (
            [] if beat is None or beat.beat_at is None else [([], (timezone.now() - beat.beat_at).total_seconds())]
        )
        yield node_family(
            GaugeMetricFamily,
            "mlxm_supervisor_heartbeat_age_seconds",
            "Seconds since the supervisor's last heartbeat.",
            [],
            ages,
        )

    def system_metrics(self) -> Iterator[Metric]:
        sample = SystemSample.objects.order_by("-taken_at").first()
        if sample is None:
            return
        for name, documentation, value in (
            ("mlxm_system_memory_total_bytes", "Physical memory of the machine.", sample.memory_total),
            ("mlxm_system_memory_available_bytes", "Memory available to new processes.", sample.memory_available),
            (
                "mlxm_system_memory_servers_bytes",
                "Resident memory of all model servers.",
                sample.memory_used_by_servers,
            ),
        ):
            yield node_family(GaugeMetricFamily, name, documentation, [], [([], float(value))])
