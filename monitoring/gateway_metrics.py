"""The gateway's request figures for `/metrics`, computed at each scrape from its usage records
(one row per `/v1/` request, in the database: the same answer from every gunicorn worker).

Counters and histograms cover the records kept (`MLXM_USAGE_RETENTION_DAYS`); when old records
are pruned a counter goes down, which Prometheus' rate() and increase() read as a counter reset."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db.models import Count, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from gateway.limits.queue import queue_views
from gateway.models import UsageRecord
from monitoring.collector import family, node_name
from profiles.models import ServerProfile

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABELS = ["model", "api", "node"]


def _histogram(name: str, documentation: str, field: str, buckets: Sequence[float]) -> HistogramMetricFamily:
    """A histogram of a milliseconds column, by model and API, in seconds: one GROUP BY query."""
    has_value = Q(**{f"{field}__isnull": False})
    rows = (
        UsageRecord.objects.filter(has_value)
        .values("model_name", "api", "profile__node__name")
        .order_by("model_name", "api", "profile__node__name")
        .annotate(
            count=Count("id"),
            total=Sum(field),
            **{f"le_{n}": Count("id", filter=Q(**{f"{field}__lte": bound * 1000})) for n, bound in enumerate(buckets)},
        )
    )
    histogram = HistogramMetricFamily(name, documentation, labels=LABELS)
    for typed_row in rows:
        row: dict[str, Any] = dict(typed_row)  # a plain dict: the bucket columns are named at run time
        cumulative = [(floatToGoString(bound), float(row[f"le_{n}"])) for n, bound in enumerate(buckets)]
        histogram.add_metric(
            [row["model_name"], row["api"], _node(row)],
            buckets=[*cumulative, ("+Inf", float(row["count"]))],
            sum_value=float(row["total"] or 0) / 1000,
        )
    return histogram


def _node(row: Mapping[str, Any]) -> str:
    """The node that serves the record's model (this node for a record whose profile is gone)."""
    return str(row["profile__node__name"] or node_name())


class GatewayCollector:
    """Requests by model, API and status; their durations and times to the first token; tokens."""

    def collect(self) -> Iterator[Metric]:
        by_status = (
            UsageRecord.objects.values("model_name", "api", "profile__node__name", "status")
            .order_by("model_name", "api", "profile__node__name", "status")
            .annotate(count=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
        )
        requests: list[tuple[list[str], float]] = []
        tokens: dict[tuple[str, str, str], list[float]] = {}  # the statuses of one model, API and node summed
        for row in by_status:
            labels = (row["model_name"], row["api"], _node(row))
            requests.append(([*labels, str(row["status"])], row["count"]))
            sums = tokens.setdefault(labels, [0.0, 0.0])
            sums[0] += row["prompt"] or 0
            sums[1] += row["completion"] or 0
        yield family(
            CounterMetricFamily,
            "mlxm_gateway_requests",
            "Requests to /v1/ that named a model.",
            [*LABELS, "status"],
            requests,
        )
        yield family(
            CounterMetricFamily,
            "mlxm_gateway_prompt_tokens",
            "Prompt tokens of /v1/ requests.",
            LABELS,
            ((labels, prompt) for labels, (prompt, _completion) in tokens.items()),
        )
        yield family(
            CounterMetricFamily,
            "mlxm_gateway_completion_tokens",
            "Completion tokens of /v1/ requests.",
            LABELS,
            ((labels, completion) for labels, (_prompt, completion) in tokens.items()),
        )
        yield from _queue_metrics()
        yield _histogram(
            "mlxm_gateway_request_duration_seconds", "Duration of /v1/ requests.", "duration_ms", DURATION_BUCKETS
        )
        yield _histogram(
            "mlxm_gateway_time_to_first_token_seconds",
            "Time from a /v1/ request to its first token (or its answer, unstreamed).",
            "ttft_ms",
            TTFT_BUCKETS,
        )


def _queue_metrics() -> Iterator[Metric]:
    """This node's fair queues (gateway/limits/queue.py): served and waiting per model, who waits,
    and the longest wait. Models are the profiles' names; people their emails."""
    views = queue_views()
    names = dict(ServerProfile.objects.filter(pk__in=views).values_list("pk", "name"))
    node = node_name()
    shown = [(names.get(pk, str(pk)), view) for pk, view in views.items()]
    yield family(GaugeMetricFamily, "mlxm_gateway_queue_serving", "Requests a model server serves now.",
                 ["model", "node"], (([model, node], view.serving) for model, view in shown))  # fmt: skip
    yield family(GaugeMetricFamily, "mlxm_gateway_queue_waiting", "Requests waiting for their turn.",
                 ["model", "node", "user"],
                 (([model, node, who], n) for model, view in shown for who, n in view.by_person))  # fmt: skip
    yield family(GaugeMetricFamily, "mlxm_gateway_queue_oldest_wait_seconds", "How long the longest-waiting request has waited.",
                 ["model", "node"], (([model, node], view.oldest_wait) for model, view in shown))  # fmt: skip
