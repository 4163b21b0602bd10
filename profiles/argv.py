"""Temporary minimal argv builder so the supervisor can be built; replaced at merge by the
profiles engineer's full version (same name and signature)."""

from __future__ import annotations

import sys

from profiles.models import ServerProfile


def build_server_argv(profile: ServerProfile) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlx_lm",
        "server",
        "--model",
        profile.model,
        "--host",
        profile.host,
        "--port",
        str(profile.port),
    ]
