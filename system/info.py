"""Facts about this machine for the System page: memory, what MLX recommends for models, chip, OS,
versions, the Hugging Face cache, and the supervisor as its heartbeat reports it.

Reads only. Memory comes from psutil, except on macOS where psutil's "available" and "used" do not
match what the OS (and Activity Monitor) counts; there `vm_stat` and `sysctl` are asked directly.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from library.models import Download, DownloadState
from servers.models import Server, SystemSample
from servers.states import WITH_PROCESS

# When MLX does not say how much memory it may use for models, this share of RAM is shown instead.
# Metal's recommendedMaxWorkingSetSize is about three quarters of RAM on Apple Silicon Macs.
RECOMMENDED_FRACTION = 0.75
CACHE_SIZE_SECONDS = 60
PACKAGES = ("mlx", "mlx-lm", "Django", "huggingface_hub")
# Server states in which a model server process exists and holds memory.


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout


# --- memory ---


@dataclass(frozen=True)
class Memory:
    total: int
    available: int
    used: int
    swap_total: int
    swap_used: int
    source: str

    @property
    def used_percent(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


def _psutil_memory() -> Memory:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return Memory(
        total=vm.total,
        available=vm.available,
        used=vm.total - vm.available,
        swap_total=swap.total,
        swap_used=swap.used,
        source="psutil",
    )


def parse_vm_stat(text: str) -> dict[str, int]:
    """`vm_stat` output as {"page size": bytes, "pages free": n, "anonymous pages": n, ...}."""
    pages: dict[str, int] = {}
    if match := re.search(r"page size of (\d+) bytes", text):
        pages["page size"] = int(match.group(1))
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        value = value.strip().rstrip(".")
        if sep and value.isdigit():
            pages[name.strip().strip('"').lower()] = int(value)
    return pages


def parse_swapusage(text: str) -> tuple[int, int]:
    """`sysctl vm.swapusage` ("total = 2048.00M  used = 1024.50M ...") as (total, used) bytes."""
    units = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

    def size(name: str) -> int:
        match = re.search(rf"{name} = ([\d.]+)([BKMGT])", text)
        return int(float(match.group(1)) * units[match.group(2)]) if match else 0

    return size("total"), size("used")


def darwin_memory_from(vm_stat: str, memsize: str, swapusage: str) -> Memory:
    """Memory as Activity Monitor counts it: used = app memory (anonymous pages that are not
    purgeable) + wired + compressed; available = the rest."""
    pages = parse_vm_stat(vm_stat)
    page = pages.get("page size", 16384)
    total = int(memsize.strip())
    app = pages.get("anonymous pages", 0) - pages.get("pages purgeable", 0)
    used_pages = app + pages.get("pages wired down", 0) + pages.get("pages occupied by compressor", 0)
    used = min(total, max(0, used_pages) * page)
    swap_total, swap_used = parse_swapusage(swapusage)
    return Memory(
        total=total,
        available=total - used,
        used=used,
        swap_total=swap_total,
        swap_used=swap_used,
        source="vm_stat and sysctl",
    )


def _darwin_memory() -> Memory:
    try:
        return darwin_memory_from(
            _run(["vm_stat"]), _run(["sysctl", "-n", "hw.memsize"]), _run(["sysctl", "vm.swapusage"])
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return _psutil_memory()


MEMORY_READERS: dict[str, Callable[[], Memory]] = {"darwin": _darwin_memory}


def memory(*, platform_name: str | None = None) -> Memory:
    """This machine's memory, read the way that is right for its OS."""
    return MEMORY_READERS.get(platform_name or sys.platform, _psutil_memory)()


def servers_memory() -> int:
    """Resident memory of our model servers, as the supervisor last measured it."""
    total = Server.objects.filter(state__in=WITH_PROCESS).aggregate(total=Sum("rss_bytes"))["total"]
    return int(total or 0)


# --- MLX, chip, OS, versions ---


@dataclass(frozen=True)
class Recommended:
    bytes: int
    from_mlx: bool
    note: str


@functools.cache
def mlx_device_info() -> dict[str, Any]:
    """What MLX says about its device ({} when it cannot say); asked once per process."""
    try:
        import mlx.core as mx

        info_fn = getattr(mx, "device_info", None) or mx.metal.device_info
        info = info_fn()
    except Exception:  # an MLX build without the call or without a device must not break the page
        return {}
    return dict(info) if isinstance(info, dict) else {}


def recommended_for_models(total_memory: int, device_info: dict[str, Any]) -> Recommended:
    size = device_info.get("max_recommended_working_set_size")
    if isinstance(size, int) and size > 0:
        return Recommended(size, True, "as MLX reports it (max_recommended_working_set_size)")
    share = round(RECOMMENDED_FRACTION * 100)
    return Recommended(
        int(total_memory * RECOMMENDED_FRACTION),
        False,
        f"{share}% of RAM: MLX reports no recommended working set on this machine",
    )


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


def disk_usage_bytes(folder: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks; symlinks are not followed, so the cache's
    snapshot links do not count the blobs twice)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def cache_size(folder: Path) -> int:
    """disk_usage_bytes, kept for a minute: walking a large cache at every poll would be wasteful."""
    key = f"system:cache-size:{folder}"
    size = cache.get(key)
    if size is None:
        size = disk_usage_bytes(folder)
        cache.set(key, size, CACHE_SIZE_SECONDS)
    return int(size)


def free_disk(folder: Path) -> int:
    """Free bytes on the disk that holds the folder (or its nearest existing parent)."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class HubCache:
    path: Path
    exists: bool
    size: int
    free: int


def hub_cache() -> HubCache:
    path = Path(settings.HF_HUB_CACHE)
    exists = path.is_dir()
    return HubCache(path=path, exists=exists, size=cache_size(path) if exists else 0, free=free_disk(path))


# --- the supervisor ---


def supervised_servers() -> list[Server]:
    """The model servers the supervisor has a process for (or is bringing up or down)."""
    return list(Server.objects.filter(state__in=WITH_PROCESS).select_related("profile"))


def downloads_in_flight() -> list[Download]:
    return list(
        Download.objects.filter(state__in=(DownloadState.QUEUED, DownloadState.DOWNLOADING)).order_by("created_at")
    )


class MemoryPoint(NamedTuple):
    """The columns of a SystemSample the memory chart draws."""

    taken_at: datetime
    memory_total: int
    memory_available: int
    memory_used_by_servers: int


def memory_samples(*, now: datetime | None = None, minutes: int = 60) -> list[MemoryPoint]:
    since = (now or timezone.now()) - timedelta(minutes=minutes)
    rows = SystemSample.objects.filter(taken_at__gte=since).order_by("taken_at").values_list(*MemoryPoint._fields)
    return [MemoryPoint(*row) for row in rows]


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
