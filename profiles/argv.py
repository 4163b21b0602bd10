"""The command line that runs a profile's `mlx_lm.server`.

A minimal version for the dashboard's server page; the profiles work replaces it with the full
builder (every option), keeping these names and signatures.
"""

from __future__ import annotations

import shlex
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


def command_line(profile: ServerProfile) -> str:
    """The argv as one line a person can paste into a shell."""
    return shlex.join(build_server_argv(profile))
