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

from mlxmanager.types import AuthedRequest
from servers import system_info
from servers.heartbeat import supervisor_status
from servers.models import SystemSample
from servers.service_install import ServiceError, SubprocessRunner, current_target, manage_command, services_status

POLL_SECONDS = 5
CHART_MINUTES = 60
CHART_WIDTH, CHART_HEIGHT = 600.0, 120.0
SERVICE_STATUS_SECONDS = 30


# The memory chart places samples by their time (a pause in sampling keeps its width), unlike the dashboard's
# evenly spaced sparklines (servers/charts.py in its branch); pure functions, no charting JS.


def svg_points(
    values: Sequence[float],
    *,
    width: float = 100.0,
    height: float = 30.0,
    vmax: float | None = None,
    xs: Sequence[float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> str:
    """`points` for an SVG <polyline> in a `0 0 width height` viewBox: y grows downwards, so the
    largest value (vmax, by default the largest of the values) is at the top. `xs` places the
    points along the x axis (any unit; by default evenly spaced), and `x_range` is the stretch of
    that axis the width shows (by default from the first to the last x).
    """
    if not values:
        return ""
    top = vmax if vmax is not None else max(values)
    top = top if top > 0 else 1.0
    if xs is None:
        xs = list(range(len(values)))
    x0, x1 = x_range if x_range is not None else (xs[0], xs[-1])
    span = (x1 - x0) or 1.0
    points = []
    for x, value in zip(xs, values, strict=True):
        px = width * (x - x0) / span if len(values) > 1 or x_range else width
        py = height - height * min(max(value, 0.0), top) / top
        points.append(f"{px:.2f},{py:.2f}")
    return " ".join(points)


def svg_area(points: str, *, height: float = 30.0) -> str:
    """A closed polygon under a polyline from svg_points, for a filled area chart."""
    if not points:
        return ""
    first_x = points.split(" ", 1)[0].split(",")[0]
    last_x = points.rsplit(" ", 1)[-1].split(",")[0]
    return f"{first_x},{height:.2f} {points} {last_x},{height:.2f}"


def memory_chart(samples: list[SystemSample], *, now: datetime, limit: int | None = None) -> dict[str, Any]:
    """Used memory (total - available) and our servers' share over the last hour, as SVG shapes,
    with a line at `limit` (what MLX recommends for models)."""
    if not samples:
        return {}
    top = max(s.memory_total for s in samples)
    start = now.timestamp() - CHART_MINUTES * 60
    xs = [s.taken_at.timestamp() for s in samples]
    plot = functools.partial(
        svg_points, width=CHART_WIDTH, height=CHART_HEIGHT, vmax=top, xs=xs, x_range=(start, now.timestamp())
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
    memory = system_info.memory()
    ours = system_info.servers_memory()
    device = system_info.mlx_device_info()
    recommended = system_info.recommended_for_models(memory.total, device)
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
            statuses = services_status(target=target, runner=SubprocessRunner())
        except ServiceError as exc:
            context["service_error"] = str(exc)
            return context
        cache.set("system:service-status", statuses, SERVICE_STATUS_SECONDS)
    context["service_statuses"] = statuses
    return context


def system(request: AuthedRequest) -> HttpResponse:
    context = live_context()
    if getattr(request, "htmx", False):
        return render(request, "servers/system_live.html", context)
    device = system_info.mlx_device_info()
    context |= {
        "processor": system_info.processor(device),
        "operating_system": system_info.operating_system(),
        "python": system_info.python_version(),
        "versions": system_info.package_versions(),
        "device": device,
    }
    if request.user.is_admin:
        context |= service_context()
    return render(request, "servers/system.html", context)
