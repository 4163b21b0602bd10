"""This machine's memory, read the way its OS counts it, and the one figure for what models may use.

On macOS psutil's "available" is not what Activity Monitor shows, so `vm_stat` and `sysctl` are
asked directly. The supervisor samples memory through its Host (which reads it here) and pages show
the newest sample, so every page shows the same figure. `for_models` is the one answer to "how much
may models use": the Hub search's *fits in memory* badge, the supervisor's start admission check
and the System page all ask it.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

RECOMMENDED_FRACTION = 0.75


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout


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


def swap() -> tuple[int, int]:
    """Total and used swap in bytes (a system call, no subprocess, on every OS)."""
    used = psutil.swap_memory()
    return int(used.total), int(used.used)


def _psutil_memory() -> Memory:
    vm = psutil.virtual_memory()
    swap_total, swap_used = swap()
    return Memory(
        total=vm.total,
        available=vm.available,
        used=vm.total - vm.available,
        swap_total=swap_total,
        swap_used=swap_used,
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


def for_models(total: int | None = None) -> Recommended:
    """What model servers together may use on this machine (of `total` bytes of RAM, psutil's by default)."""
    return recommended_for_models(total if total is not None else int(psutil.virtual_memory().total), mlx_device_info())
