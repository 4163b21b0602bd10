"""A cold start through the gateway against the same start without it: the whole app as `make run`
serves it (testing/stack.py) and real `mlx_lm.server` processes on the tiny model.

Interleaved, ROUNDS each, the model stopped before each:
- through: a streamed one-token request to /v1/ for a stopped on-demand profile, sent to first byte;
- raw: `server_start` to the supervisor's `running` stamp (the moment the readiness answer was
  seen; timed inside the Django shell, its own startup excluded, so no poll's granularity counts),
  plus a streamed one-token request sent straight to the model server, to first byte.
The difference of the medians is what the on-demand path adds (goal: at most 150 ms). The note
splits a cold request: sent to its start recorded (the gateway's own work), and the `running`
stamp to its first byte (the wait's wake-up, the relay, the server's first answer)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Result, first_byte, paired_difference, summarize
from testing.net import free_port
from testing.stack import Stack

ROUNDS = 10
WEB_WORKERS = 2  # gunicorn.conf.py's default
PASSWORD = "ondemand-bench-password-42"

SEED = """
import sys
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
user = User.objects.create_superuser(email="bench@example.com", password="{password}")
ServerProfile.objects.create(name="cold", model="{model}", port={cold_port}, on_demand=True)
ServerProfile.objects.create(name="raw", model="{model}", port={raw_port})
sys.stdout.write(key_create(user=user, name="bench").secret)
"""

STOP_BOTH = """
import time
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import ServerActionRefused, server_stop
for profile in ServerProfile.objects.all():
    try:
        server_stop(profile=profile, by=None)
    except ServerActionRefused:
        pass
while Server.objects.exclude(state="stopped").exists():
    time.sleep(0.02)
"""

RAW_START = """
import sys, time
from profiles.models import ServerProfile
from servers.models import Server
from servers.services import server_start
began = time.time()
server_start(profile=ServerProfile.objects.get(name="raw"), by=None)
while (server := Server.objects.get(profile__name="raw")).state != "running":
    time.sleep(0.01)
sys.stdout.write(f"{(server.state_changed_at.timestamp() - began) * 1000:.1f}")
"""

# When the cold request's start was recorded and when the server was seen ready (epoch seconds).
COLD_MOMENTS = """
import sys
from servers.models import Server, ServerEvent
server = Server.objects.get(profile__name="cold")
start = ServerEvent.objects.filter(server=server, kind="action", action="start").order_by("-id").first()
sys.stdout.write(f"{start.created_at.timestamp()} {server.state_changed_at.timestamp()}")
"""


def _warm_up(stack: Stack, through: httpx.Client, direct: httpx.Client) -> None:
    """One discarded round of each, then warm requests that reach every gunicorn worker: the figure
    is about a cold model, not a worker's first upstream connection or a cold disk cache."""
    stack.manage("shell", "-c", STOP_BOTH)
    first_byte(through, "cold", max_tokens=1)
    for _ in range(2 * WEB_WORKERS):
        first_byte(through, "cold", max_tokens=1)
    stack.manage("shell", "-c", STOP_BOTH)
    stack.manage("shell", "-c", RAW_START)
    first_byte(direct, "default_model", max_tokens=1)


def run() -> list[Result]:
    from testing.tinymodel import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="mlxm-ondemand-") as root:
        model = make_tiny_model(Path(root) / "tiny-llama")
        cold_port, raw_port = free_port(), free_port()
        stack = Stack(Path(root) / "stack").start()
        try:
            seed = SEED.format(password=PASSWORD, model=model, cold_port=cold_port, raw_port=raw_port)
            secret = stack.manage("shell", "-c", seed).stdout.strip().splitlines()[-1]
            through = httpx.Client(
                base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=300
            )
            direct = httpx.Client(base_url=f"http://127.0.0.1:{raw_port}/v1", timeout=300)
            _warm_up(stack, through, direct)
            cold, raw, ready, to_start, after_running = [], [], [], [], []
            for _ in range(ROUNDS):
                stack.manage("shell", "-c", STOP_BOTH)
                sent = time.time()
                cold.append(first_byte(through, "cold", max_tokens=1))
                moments = stack.manage("shell", "-c", COLD_MOMENTS).stdout.strip().splitlines()[-1].split()
                started, running = float(moments[0]), float(moments[1])
                to_start.append((started - sent) * 1000)
                after_running.append(sent * 1000 + cold[-1] - running * 1000)
                stack.manage("shell", "-c", STOP_BOTH)
                start_ms = float(stack.manage("shell", "-c", RAW_START).stdout.strip().splitlines()[-1])
                ready.append(start_ms)
                raw.append(start_ms + first_byte(direct, "default_model", max_tokens=1))
            stack.manage("shell", "-c", STOP_BOTH)
        finally:
            stack.stop()
    direct_ms = [total - start for total, start in zip(raw, ready, strict=True)]
    note = (
        f"through p50 {statistics.median(cold):.0f} ms; raw p50 {statistics.median(raw):.0f} ms "
        f"(start-to-running {statistics.median(ready):.0f} ms + direct first byte {statistics.median(direct_ms):.0f} ms); "
        f"cold request: sent to start recorded p50 {statistics.median(to_start):.0f} ms, "
        f"running stamp to first byte p50 {statistics.median(after_running):.0f} ms"
    )
    via = summarize(
        "on demand: cold start through /v1/, request to first byte",
        "ms",
        cold,
        baseline="raw start-to-running + direct first byte",
        baseline_samples=raw,
    )
    added = paired_difference(
        "on demand: cold start through /v1/, added vs raw start + first token",
        "ms",
        cold,
        raw,
        baseline="raw start-to-running + direct first byte (interleaved pairs)",
        goal=150.0,
        note=note,
    )
    return [added, via]
