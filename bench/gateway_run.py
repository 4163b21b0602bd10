"""What the gateway's benchmarks share: the whole app as `make run` serves it (testing/stack.py),
a real `mlx_lm.server` on the tiny model started through the services as a person would, and an
API key; clients through the gateway and straight to the model server (the baseline)."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from bench.common import EMAIL, PASSWORD
from testing.net import free_port
from testing.stack import Stack

SEED = """
import json
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.services import server_start
user = User.objects.create_superuser(email={email!r}, password={password!r})
profile = ServerProfile.objects.create(name="tiny", model={model!r}, port={port})
server_start(profile=profile, by=user)
print(json.dumps([key_create(user=user, name=f"bench-{{i}}").secret for i in range({keys})]))
"""

USAGE_COUNT = """
from gateway.models import UsageRecord
print(UsageRecord.objects.count())
"""


class GatewayRun:
    """`with GatewayRun() as run:` the stack, the tiny model's server running (or the model that
    `make_model(folder)` makes), `run.secrets` API keys of one administrator; `run.through` and
    `run.direct` are clients of the two paths."""

    def __init__(self, *, keys: int = 1, make_model: Callable[[Path], Path] | None = None) -> None:
        self.keys, self.make_model = keys, make_model
        self.folder = tempfile.TemporaryDirectory(prefix="mlxm-gateway-")
        self.root = Path(self.folder.name)
        self.model_port = free_port()
        self.stack = Stack(self.root / "stack")
        self.secrets: list[str] = []

    def __enter__(self) -> GatewayRun:
        from testing.tinymodel import make_tiny_model

        try:
            model = (self.make_model or make_tiny_model)(self.root / "model")
            self.stack.start()
            seed = SEED.format(email=EMAIL, password=PASSWORD, model=str(model), port=self.model_port, keys=self.keys)
            self.secrets = json.loads(self.manage_shell(seed).strip().splitlines()[-1])
            self.through = self.client_through()
            self.direct = httpx.Client(base_url=self.direct_url, timeout=60)
            wait_running(self.through)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def secret(self) -> str:
        return self.secrets[0]

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.model_port}/v1"

    @property
    def through_url(self) -> str:
        return f"{self.stack.url}/v1"

    def auth(self, secret: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret or self.secret}"}

    def client_through(self, secret: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.through_url, headers=self.auth(secret), timeout=60)

    def manage_shell(self, code: str) -> str:
        return self.stack.manage("shell", "-c", code).stdout

    def usage_records(self) -> int:
        return int(self.manage_shell(USAGE_COUNT).strip().splitlines()[-1])

    def web_masters(self) -> list[psutil.Process]:
        """The gunicorn masters under honcho (the web server a person's SIGTERM would reach)."""
        assert self.stack.process is not None
        found = []
        for process in psutil.Process(self.stack.process.pid).children(recursive=True):
            try:
                parent = process.parent()
                if "gunicorn" in " ".join(process.cmdline()) and "gunicorn" not in " ".join(
                    parent.cmdline() if parent else []
                ):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def sigterm_web(self, timeout: float = 60.0) -> None:
        """SIGTERM to the web server (every gunicorn master), as a service manager stops it; returns
        once the masters and their workers have exited."""
        masters = self.web_masters()
        if not masters:
            raise RuntimeError("no gunicorn master under honcho")
        family = [p for m in masters for p in (m, *m.children(recursive=True))]
        for master in masters:
            os.kill(master.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=timeout)
        if alive:
            raise RuntimeError(f"the web server did not exit within {timeout:g} s of SIGTERM")

    def close(self) -> None:
        from testing.supervisor import server_processes

        self.stack.stop()
        leftovers = server_processes(self.model_port)
        for process in leftovers:
            process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        self.folder.cleanup()


def wait_running(client: httpx.Client, timeout: float = 180.0) -> None:
    """Until the first model `client`'s `/v1/models` lists says it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = client.get("/models").json().get("data", [])
        if models and models[0].get("state") == "running":
            return
        time.sleep(0.5)
    raise TimeoutError("the bench's model server did not reach running")
