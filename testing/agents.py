"""Where the tests find the real agent CLIs that `make agents` installs from npm."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parent / "agents" / "node_modules" / ".bin"


def agent_cli(name: str) -> Path:
    """The CLI's path (`claude` or `codex`). Skips only where npm is absent; where npm is present
    a missing CLI is a failed setup, not a reason to skip."""
    if shutil.which("npm") is None:
        pytest.skip("npm is absent: the agent CLIs cannot be installed here")
    path = BIN / name
    assert path.exists(), f"{path} is missing: run `make agents`"
    return path
