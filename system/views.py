"""The System page: this machine's memory, chip, versions and Hugging Face cache, the supervisor's
state, and (for admins) the OS services. The live part is re-fetched by htmx every few seconds."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.types import AuthedRequest
from core.memory import for_models, mlx_device_info
from nodes.status import node_statuses, supervisor_status
from servers.charts import sparkline_points
from servers.selectors import system_memory
from system import info as system_info
from system.service_install import current_target, manage_command, services_status
from system.service_plan import STATUS_TIMEOUT, ServiceError, SubprocessRunner

POLL_SECONDS = 5
CHART_MINUTES = 60
CHART_WIDTH, CHART_HEIGHT = 600.0, 120.0
SERVICE_STATUS_SECONDS = 30


def svg_area(points: str, *, height: float = 30.0) -> str:
    """A closed polygon under a polyline from sparkline_points, for a filled area chart."""
    if not points:
        return ""
    first_x = points.split(" ", 1)[0].split(",")[0]
    last_x = points.rsplit(" ", 1)[-1].split(",")[0]
    return f"{first_x},{height:.2f} {points} {last_x},{height:.2f}"


def memory_chart(
    samples: Sequence[system_info.MemoryPoint], *, now: datetime, limit: int | None = None
) -> dict[str, Any]:
    """Used memory (total - available) and our servers' share over the last hour, as SVG shapes,
    with a line at `limit` (what MLX recommends for models)."""
    if not samples:
        return {}
    top = max(s.memory_total for s in samples)
    start = now.timestamp() - CHART_MINUTES * 60
    xs = [s.taken_at.timestamp() for s in samples]
    plot = functools.partial(
        sparkline_points,
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        maximum=top,
        pad=0.0,
        xs=xs,
        x_range=(start, now.timestamp()),
    )
    used = plot([s.memory_total - s.memory_available for s in samples])
    servers = plot([s.memory_used_by_servers for s in samples])
    return {
        "used_points": used,
        "used_area": svg_area(used, height=CHART_HEIGHT),
        "servers_points": servers,
        "servers_area": svg_area(servers, height=CHART_HEIGHT),
        "top": top,
        "limit_y": f"{CHART_HEIGHT - CHART_HEIGHT * min(limit, top) / top:.2f}" if limit and top else None,
        "count": len(samples),
        "width": int(CHART_WIDTH),
        "height": int(CHART_HEIGHT),
    }


def live_context() -> dict[str, Any]:
    now = timezone.now()
    memory = system_memory()
    ours = system_info.servers_memory()
    recommended = for_models(memory.total)
    samples = system_info.memory_samples(now=now, minutes=CHART_MINUTES)
    return {
        "now": now,
        "poll_seconds": POLL_SECONDS,
        "memory": memory,
        "servers_memory": ours,
        "servers_percent": 100.0 * ours / memory.total if memory.total else 0.0,
        "other_percent": max(0.0, memory.used_percent - (100.0 * ours / memory.total if memory.total else 0.0)),
        "recommended": recommended,
        "hub_cache": system_info.hub_cache(),
        "supervisor": supervisor_status(now=now),
        "nodes": node_statuses(now=now),
        "servers": system_info.supervised_servers(),
        "downloads": system_info.downloads_in_flight(),
        "chart": memory_chart(samples, now=now, limit=recommended.bytes),
    }


def service_context() -> dict[str, Any]:
    """The OS services' status (asked of launchctl/systemctl, kept briefly) and the commands."""
    target = current_target()
    context: dict[str, Any] = {
        "install_command": manage_command(target),
        "uninstall_command": manage_command(target, "--uninstall"),
        "status_command": manage_command(target, "--status"),
        "service_manager": "launchd" if target.platform == "darwin" else "systemd",
    }
    statuses = cache.get("system:service-status")
    if statuses is None:
        try:
            statuses = services_status(target=target, runner=SubprocessRunner(timeout=STATUS_TIMEOUT))
        except ServiceError as exc:
            context["service_error"] = str(exc)
            return context
        cache.set("system:service-status", statuses, SERVICE_STATUS_SECONDS)
    context["service_statuses"] = statuses
    return context


def system(request: AuthedRequest) -> HttpResponse:
    context = live_context()
    if request.htmx:
        return render(request, "system/_live.html", context)
    device = mlx_device_info()
    context |= {
        "processor": system_info.processor(device),
        "operating_system": system_info.operating_system(),
        "python": system_info.python_version(),
        "versions": system_info.package_versions(),
        "device": device,
    }
    if request.user.is_admin:
        context |= service_context()
    return render(request, "system/system.html", context)
