"""The gateway (`/v1/`) against the same requests sent straight to the model server: the whole app
as `make run` serves it (testing/stack.py) and a real `mlx_lm.server` on the tiny model.

- added latency of a small non-streaming completion (p50, p95), 200 requests each, interleaved;
- added time to the first byte of a stream, 200 each, interleaved;
- 16 concurrent streams: total tokens per second through the gateway against direct;
- the dashboard partial's p95 while 16 streams run, against idle.

`WEB_WORKER_CLASS=uvicorn.workers.UvicornWorker make bench` measures uvicorn's worker instead of
gunicorn's own `asgi` worker (docs/performance.md, "Serving")."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import EMAIL, PASSWORD, Result, SessionClient, first_byte, paired_difference, summarize
from testing.net import free_port
from testing.stack import Stack

REQUESTS = 200
STREAMS = 16
STREAM_TOKENS = 100
ROUNDS = 3
NO_EOS = {"2": -1000}  # the tiny model's </s>: streams run to max_tokens

SEED = """
import sys
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.services import server_start
user = User.objects.create_superuser(email="{email}", password="{password}")
profile = ServerProfile.objects.create(name="tiny", model="{model}", port={port})
server_start(profile=profile, by=user)
sys.stdout.write(key_create(user=user, name="bench").secret)
"""


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _wait_running(client: httpx.Client, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = client.get("/models").json().get("data", [])
        if models and models[0].get("state") == "running":
            return
        time.sleep(0.5)
    raise TimeoutError("the tiny model's server did not reach running")


def _completion(client: httpx.Client, model: str) -> float:
    began = time.perf_counter()
    answer = client.post(
        "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    )
    answer.raise_for_status()
    return (time.perf_counter() - began) * 1000


def _stream_tokens(base_url: str, headers: dict[str, str], model: str, counts: list[int]) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
        "logit_bias": NO_EOS,
    }
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=300) as client,
        client.stream("POST", "/chat/completions", json=body) as answer,
    ):
        counts.append(sum(1 for line in answer.iter_lines() if line.startswith("data: {") and '"content": "' in line))


def _concurrent(base_url: str, headers: dict[str, str], model: str) -> float:
    """Tokens per second over all of STREAMS streams at once."""
    counts: list[int] = []
    threads = [threading.Thread(target=_stream_tokens, args=(base_url, headers, model, counts)) for _ in range(STREAMS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def _dashboard_p95(port: int, samples: int = 60) -> float:
    browser = SessionClient(port)
    browser.log_in()
    latencies = []
    for _ in range(samples):
        began = time.perf_counter()
        status, _ = browser.request("GET", "/servers/", headers={"HX-Request": "true"})
        assert status == 200
        latencies.append((time.perf_counter() - began) * 1000)
        time.sleep(0.05)
    return _p95(latencies)


def _dashboard_into(port: int, holder: list[float]) -> None:
    holder.append(_dashboard_p95(port, samples=30))


def run() -> list[Result]:
    from testing.tinymodel import make_tiny_model

    worker = os.environ.get("WEB_WORKER_CLASS", "asgi")
    with tempfile.TemporaryDirectory(prefix="mlxm-gateway-") as root:
        model = make_tiny_model(Path(root) / "tiny-llama")
        model_port = free_port()
        stack = Stack(Path(root) / "stack").start()
        try:
            seeded = stack.manage(
                "shell", "-c", SEED.format(email=EMAIL, password=PASSWORD, model=model, port=model_port)
            )
            secret = seeded.stdout.strip().splitlines()[-1]
            auth = {"Authorization": f"Bearer {secret}"}
            through = httpx.Client(base_url=f"{stack.url}/v1", headers=auth, timeout=60)
            direct = httpx.Client(base_url=f"http://127.0.0.1:{model_port}/v1", timeout=60)
            _wait_running(through)
            for _ in range(10):  # warm both paths
                _completion(through, "tiny"), _completion(direct, "default_model")

            via, straight = [], []
            for _ in range(REQUESTS):
                via.append(_completion(through, "tiny"))
                straight.append(_completion(direct, "default_model"))
            ttfb_via, ttfb_straight = [], []
            for _ in range(REQUESTS):
                ttfb_via.append(first_byte(through, "tiny", max_tokens=4))
                ttfb_straight.append(first_byte(direct, "default_model", max_tokens=4))

            idle_p95 = _dashboard_p95(stack.port)
            ratios, busy_p95 = [], []
            for _ in range(ROUNDS):
                direct_rate = _concurrent(f"http://127.0.0.1:{model_port}/v1", {}, "default_model")
                holder: list[float] = []
                dash = threading.Thread(target=_dashboard_into, args=(stack.port, holder))
                dash.start()
                via_rate = _concurrent(f"{stack.url}/v1", auth, "tiny")
                dash.join()
                ratios.append(direct_rate / via_rate)
                busy_p95.append(holder[0] / idle_p95)
        finally:
            stack.stop()
    return [
        paired_difference(
            "gateway: added latency, small completion", "ms", via, straight,
            baseline="direct to the model server", goal=2.0, note=f"worker {worker}, interleaved pairs",
        ),
        paired_difference(
            "gateway: added time to first streamed byte", "ms", ttfb_via, ttfb_straight,
            baseline="direct to the model server", goal=2.0, note=f"worker {worker}",
        ),
        summarize(
            "gateway: 16 streams, direct / through tokens per second", "x", ratios,
            baseline="", baseline_samples=[], goal=1 / 0.95,
            note="at most 1.053x means through keeps at least 0.95 of direct throughput",
        ),
        summarize(
            "gateway: dashboard p95 under 16 streams / idle", "x", busy_p95,
            baseline="", baseline_samples=[], goal=2.0, note=f"idle p95 {idle_p95:.1f} ms",
        ),
    ]  # fmt: skip
