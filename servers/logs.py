"""Where a server's log lives. The supervisor writes it (rotating by size: .log, .log.1, ...);
the dashboard reads it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def server_log_path(profile_id: int) -> Path:
    return Path(settings.MLXM_LOG_DIR) / f"server-{profile_id}.log"
