"""Embeddings per second through the gateway against the same requests sent straight to the model
server: the whole app as `make run` serves it (testing/stack.py) and a real `mlx_vlm.server
--embedding-model` on the tiny BERT (testing/tinyvlm.py).

- 8 concurrent clients, each sending batches of 16 short texts: embeddings per second, direct and
  through, interleaved rounds; the figure is direct / through (goal: through keeps at least 0.95).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import EMAIL, PASSWORD, Result, summarize
from bench.gateway_run import wait_running
from testing.net import free_port
from testing.stack import Stack

CLIENTS = 8
REQUESTS_PER_CLIENT = 25
BATCH = [f"the tiny model answers text number {n}" for n in range(16)]
ROUNDS = 3

SEED = """
import sys
from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.services import server_start
user = User.objects.create_superuser(email="{email}", password="{password}")
profile = ServerProfile.objects.create(
    name="bert", model="{model}", port={port}, engine="mlx_vlm", kind="embeddings"
)
server_start(profile=profile, by=user)
sys.stdout.write(key_create(user=user, name="bench").secret)
"""


def _client_loop(base_url: str, headers: dict[str, str], model: str, counts: list[int]) -> None:
    with httpx.Client(base_url=base_url, headers=headers, timeout=120, trust_env=False) as client:
        done = 0
        for _ in range(REQUESTS_PER_CLIENT):
            answer = client.post("/embeddings", json={"model": model, "input": BATCH, "encoding_format": "float"})
            answer.raise_for_status()
            done += len(answer.json()["data"])
        counts.append(done)


def _rate(base_url: str, headers: dict[str, str], model: str) -> float:
    """Embeddings per second over CLIENTS clients at once."""
    counts: list[int] = []
    threads = [threading.Thread(target=_client_loop, args=(base_url, headers, model, counts)) for _ in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def run() -> list[Result]:
    from testing.tinyvlm import make_tiny_embedder

    with tempfile.TemporaryDirectory(prefix="mlxm-embeddings-") as root:
        model = make_tiny_embedder(Path(root) / "tiny-bert")
        model_port = free_port()
        stack = Stack(Path(root) / "stack").start()
        try:
            seeded = stack.manage(
                "shell", "-c", SEED.format(email=EMAIL, password=PASSWORD, model=model, port=model_port)
            )
            auth = {"Authorization": f"Bearer {seeded.stdout.strip().splitlines()[-1]}"}
            through_url, direct_url = f"{stack.url}/v1", f"http://127.0.0.1:{model_port}/v1"
            with httpx.Client(base_url=through_url, headers=auth, timeout=60, trust_env=False) as client:
                wait_running(client)
            _rate(direct_url, {}, str(model)), _rate(through_url, auth, "bert")  # warm both paths
            direct_rates, through_rates = [], []
            for _ in range(ROUNDS):
                direct_rates.append(_rate(direct_url, {}, str(model)))
                through_rates.append(_rate(through_url, auth, "bert"))
        finally:
            stack.stop()
    ratios = [d / t for d, t in zip(direct_rates, through_rates, strict=True)]
    return [
        summarize(
            "embeddings: 8 clients, direct / through embeddings per second", "x", ratios,
            baseline="", baseline_samples=[], goal=1 / 0.95,
            note=f"direct {sorted(direct_rates)[1]:.0f}/s, through {sorted(through_rates)[1]:.0f}/s (medians); "
            "at most 1.053x means through keeps at least 0.95",
        ),
    ]  # fmt: skip
