"""What the supervisor's decisions depend on and no process: timings and limits (a profile's start
timeout), the backoff, why a process is being ended, and how an exit reads in an event. Imports
nothing of the supervisor."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from django.conf import settings

from profiles.modelinfo import default_start_timeout
from profiles.models import ServerProfile


@dataclass(frozen=True)
class Policy:
    """Timings and limits; the defaults are what `runsupervisor` uses."""

    start_timeout: float = 300.0  # for a profile without its own: this plus some per GiB of weights
    start_probe_interval: float = 0.02
    loading_probe_interval: float = 1.0  # GET /health while the one-token answer is awaited
    stop_timeout: float = 10.0
    health_interval: float = 5.0
    health_timeout: float = 2.0
    unhealthy_after: int = 3  # consecutive failed probes: running -> unhealthy
    restart_unhealthy_after: int = 3  # further failed probes while unhealthy: restart
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    fatal_after: int = 5  # consecutive failed starts, or crashes within failure_window: fatal
    failure_window: float = 120.0
    memory_headroom: int = 2 * 1024**3
    sample_interval: float = 5.0
    sample_retention: float = 3600.0
    cache_size_interval: float = 60.0  # how often the Hugging Face cache's size is measured
    heartbeat_interval: float = 2.0
    # With nothing due, wake this often (a web request wakes it at once; this catches what the
    # wake-up cannot tell, such as an adopted process's exit). Every tick reads and reconciles
    # every server, so with many servers this is most of an idle supervisor's CPU.
    idle_interval: float = 5.0
    idle_minute: float = 60.0  # seconds in one of a profile's "stop after N minutes idle" (tests shorten it)
    # A /v1/ request counted in `in_flight` with no use of its server for this long is taken as
    # gone: a gunicorn worker killed mid-request never counts its requests down, and the server
    # would otherwise never be idle-stopped nor stopped to make room.
    in_flight_stale: float = 3600.0
    log_max_bytes: int = 10 * 1024**2
    log_backups: int = 5

    @classmethod
    def from_settings(cls, **overrides: Any) -> Policy:
        values: dict[str, Any] = {
            "start_timeout": settings.MLXM_START_TIMEOUT,
            "stop_timeout": settings.MLXM_STOP_TIMEOUT,
            "memory_headroom": settings.MLXM_MEMORY_HEADROOM,
            "idle_interval": settings.MLXM_SUPERVISOR_POLL,
            "sample_interval": settings.MLXM_SUPERVISOR_POLL,
            "log_max_bytes": settings.MLXM_LOG_MAX_BYTES,
        }
        return cls(**{**values, **overrides})

    def backoff_delay(self, failures: int) -> float:
        return min(self.backoff_base * 2 ** max(failures - 1, 0), self.backoff_max)


def start_timeout(profile: ServerProfile, policy: Policy) -> float:
    """The profile's own start timeout, or one scaled by the size of the model's weights."""
    if profile.start_timeout:
        return float(profile.start_timeout)
    return default_start_timeout(profile.model, base=policy.start_timeout)


class KillReason(StrEnum):
    """Why the supervisor is ending a process on its own (not a stop asked for): its exit then
    reads as this, not as a crash."""

    NONE = ""
    TIMEOUT = "timeout"  # no one-token answer within the start timeout
    UNHEALTHY = "unhealthy"  # too many failed probes while unhealthy
    ORPHAN = "orphan"  # alive, yet recorded as not running
    FAILED = "failed"  # cannot serve (503, or the log says the load failed); the message says why


# SIGKILL that the supervisor did not send: on macOS and Linux that is almost always the system
# ending the biggest process when memory runs out (jetsam, the OOM killer).
KILLED_FROM_OUTSIDE = (
    "The process was killed by SIGKILL, which the supervisor did not send: "
    "most likely the system ran out of memory. Try a smaller model or stop another server."
)


def on_grid(now: float, interval: float) -> float:
    """The next multiple of `interval` after `now`: periodic work of every server lands on the
    same ticks, so an idle supervisor with many servers wakes up rarely."""
    return (math.floor(now / interval) + 1) * interval


def utc(timestamp: float) -> datetime:
    """A time as the clock (`Host.time`) gives it, as the database stores it."""
    return datetime.fromtimestamp(timestamp, UTC)


def refusal_message(status: int | None) -> str:
    return (
        f"GET /health answered {status}: the model server cannot generate "
        "(its model did not load, or its generation thread died)."
    )


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
