"""Fixtures for the dashboard tests: profiles, and a real mlx_lm.server on the tiny generated model."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from profiles.models import ServerProfile
from testing.net import free_port

BASE_PORT = 20000


@pytest.fixture
def make_profile(db: Any) -> Callable[..., ServerProfile]:
    counter = iter(range(1, 100_000))

    def make(
        name: str | None = None, *, port: int | None = None, model: str = "mlx-community/Tiny-4bit"
    ) -> ServerProfile:
        n = next(counter)
        return ServerProfile.objects.create(name=name or f"profile-{n:03d}", model=model, port=port or BASE_PORT + n)

    return make


@dataclass(frozen=True)
class RealServer:
    port: int
    pid: int
    model: Path


@contextlib.contextmanager
def real_server(model: Path) -> Iterator[RealServer]:
    """A real `mlx_lm.server` on `model`, answering /health before it is handed out."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlx_lm.server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlx_lm.server did not answer /health in time")
            time.sleep(0.2)
        yield RealServer(port=port, pid=process.pid, model=model)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def mlx_server(tiny_model: Path) -> Iterator[RealServer]:
    """A real `mlx_lm.server` on the tiny model, shared by the session."""
    with real_server(tiny_model) as server:
        yield server
