"""Facts about this machine for the System page: chip, OS, versions, the Hugging Face cache, and
the supervisor as its heartbeat reports it. Memory, and what models may use of it, is
core.memory's (the supervisor samples it; servers.selectors.system_memory reads the sample).

Reads only.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from library.local import disk_free
from library.models import Download, DownloadState
from nodes.selectors import this_node
from servers.models import Server, SystemSample
from servers.states import WITH_PROCESS

# When MLX does not say how much memory it may use for models, this share of RAM is shown instead.
# Metal's recommendedMaxWorkingSetSize is about three quarters of RAM on Apple Silicon Macs.
PACKAGES = ("mlx", "mlx-lm", "Django", "huggingface_hub")


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout


def servers_memory() -> int:
    """Resident memory of this node's model servers, as its supervisor last measured it."""
    total = Server.objects.filter(state__in=WITH_PROCESS, profile__node=this_node()).aggregate(total=Sum("rss_bytes"))[
        "total"
    ]
    return int(total or 0)


# --- MLX, chip, OS, versions ---


def processor(device_info: dict[str, Any]) -> str:
    name = ""
    if sys.platform == "darwin":
        try:
            name = _run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
        except (OSError, subprocess.SubprocessError):
            name = ""
    if not name:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
            if match := re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE):
                name = match.group(1).strip()
        except OSError:
            name = ""
    name = name or str(device_info.get("device_name") or platform.processor() or platform.machine())
    physical = psutil.cpu_count(logical=False)
    logical = psutil.cpu_count(logical=True)
    cores = f"{physical} cores" if physical == logical or not physical else f"{physical} cores, {logical} threads"
    return f"{name} ({platform.machine()}, {cores})"


def operating_system() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]} (Darwin {platform.release()})"
    pretty = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.partition("=")[2].strip().strip('"')
    except OSError:
        pretty = ""
    return f"{pretty or platform.system()} (kernel {platform.release()})"


def package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --- the Hugging Face cache ---


@dataclass(frozen=True)
class HubCache:
    path: Path
    exists: bool
    size: int | None  # None until the supervisor has measured it
    free: int


def hub_cache() -> HubCache:
    path = Path(settings.HF_HUB_CACHE)
    exists = path.is_dir()
    size = this_node().hub_cache_bytes
    return HubCache(path=path, exists=exists, size=size if exists else 0, free=disk_free(path))


# --- the supervisor ---


def supervised_servers() -> list[Server]:
    """The model servers this node's supervisor has a process for (or is bringing up or down)."""
    return list(Server.objects.filter(state__in=WITH_PROCESS, profile__node=this_node()).select_related("profile"))


def downloads_in_flight() -> list[Download]:
    return list(
        Download.objects.filter(node=this_node(), state__in=(DownloadState.QUEUED, DownloadState.DOWNLOADING)).order_by(
            "created_at"
        )
    )


class MemoryPoint(NamedTuple):
    """The columns of a SystemSample the memory chart draws."""

    taken_at: datetime
    memory_total: int
    memory_available: int
    memory_used_by_servers: int


def memory_samples(*, now: datetime | None = None, minutes: int = 60) -> list[MemoryPoint]:
    since = (now or timezone.now()) - timedelta(minutes=minutes)
    rows = (
        SystemSample.objects.filter(node=this_node(), taken_at__gte=since)
        .order_by("taken_at")
        .values_list(*MemoryPoint._fields)
    )
    return [MemoryPoint(*row) for row in rows]


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
