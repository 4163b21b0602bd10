"""Issue 29 through the whole app (testing/stack.py: gunicorn with 2 workers, a real supervisor and
a real `mlx_lm.server` on the tiny model):

- fairness: person A keeps 32 streams in flight against one profile serving 4 at once, person B
  sends one request at a time; B's time to the first byte against B's own when A is idle (goal:
  at most twice it plus one of A's requests' service time; first come first served would make B
  wait behind all of A's);
- limits' cost: a small completion with every limit set against the same without (goal: at most
  0.3 ms more);
- exactness: 1,000 requests through the 2 workers against a 500-requests-per-minute limit:
  exactly 500 answered (the rest 429)."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import EMAIL, PASSWORD, Result, completion, first_byte, paired_difference, summarize
from bench.gateway_run import wait_running
from testing.net import free_port
from testing.stack import Stack

IN_FLIGHT = 32
CAPACITY = 4
SAMPLES = 20
PAIRS = 300
A_TOKENS = 32
NO_EOS = {"2": -1000}

SEED = """
import sys
from accounts.limits import LimitSet
from accounts.models import User, UserStatus
from gateway.services import key_create
from profiles.models import ServerProfile
from servers.services import server_start
a = User.objects.create_superuser(email="{email}", password="{password}")
b = User.objects.create_user(email="b@example.com", password="{password}", status=UserStatus.APPROVED)
profile = ServerProfile.objects.create(name="tiny", model="{model}", port={port}, decode_concurrency={capacity})
server_start(profile=profile, by=a)
keys = [key_create(user=a, name="agent").secret, key_create(user=b, name="chat").secret,
        key_create(user=b, name="script", limits=LimitSet(requests_per_minute=500)).secret,
        key_create(user=b, name="limited", limits=LimitSet(10**6, 10**9, 10**9, 10**9, 1000)).secret]
sys.stdout.write(" ".join(keys))
"""


def _agent(base_url: str, secret: str, stop: threading.Event, durations: list[float]) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": A_TOKENS,
            "stream": True, "logit_bias": NO_EOS}  # fmt: skip
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=300) as client:
        while not stop.is_set():
            began = time.perf_counter()
            with client.stream("POST", "/chat/completions", json=body) as answer:
                for _ in answer.iter_raw():
                    pass
            durations.append((time.perf_counter() - began) * 1000)


def _answered(base_url: str, secret: str) -> int:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=120) as client:
        return int(client.post("/chat/completions", json=body).status_code == 200)


def run() -> list[Result]:
    from testing.tinymodel import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="mlxm-fair-") as root:
        model = make_tiny_model(Path(root) / "tiny-llama")
        stack = Stack(Path(root) / "stack").start()
        try:
            seed = SEED.format(email=EMAIL, password=PASSWORD, model=model, port=free_port(), capacity=CAPACITY)
            agent, chat, script, limited = stack.manage("shell", "-c", seed).stdout.strip().splitlines()[-1].split()
            base = f"{stack.url}/v1"
            b = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {chat}"}, timeout=300)
            wait_running(b)
            for _ in range(5):
                first_byte(b, "tiny", max_tokens=4)
            idle = [first_byte(b, "tiny", max_tokens=4) for _ in range(SAMPLES)]
            stop, durations = threading.Event(), []  # type: ignore[var-annotated]
            agents = [threading.Thread(target=_agent, args=(base, agent, stop, durations)) for _ in range(IN_FLIGHT)]
            for thread in agents:
                thread.start()
            while len(durations) < IN_FLIGHT:  # every agent stream has gone round once: the queue is full
                time.sleep(0.1)
            busy = [first_byte(b, "tiny", max_tokens=4) for _ in range(SAMPLES)]
            stop.set()
            for thread in agents:
                thread.join()
            free, capped = b, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {limited}"}, timeout=60)
            for _ in range(10):
                completion(free, "tiny"), completion(capped, "tiny")
            with_limits, without = [], []
            for _ in range(PAIRS):
                with_limits.append(completion(capped, "tiny"))
                without.append(completion(free, "tiny"))
            if time.time() % 60 > 15:  # a minute is a calendar one: all 1,000 within the same minute
                time.sleep(60 - time.time() % 60 + 0.5)
            with ThreadPoolExecutor(max_workers=16) as pool:
                answered = sum(pool.map(lambda _: _answered(base, script), range(1000)))
        except Exception:
            print(stack.log_path.read_text(errors="replace")[-6000:])
            raise
        finally:
            stack.stop()
    service = statistics.median(durations)
    idle_median = statistics.median(idle)
    return [
        paired_difference(
            "limits: added latency, small completion, every limit set", "ms", with_limits, without,
            baseline="the same person's key without limits", goal=0.3,
            note="both through the fast path; interleaved pairs",
        ),
        summarize(
            "fairness: B's first byte while A keeps 32 in flight", "ms", busy,
            baseline="B's first byte, A idle", baseline_samples=idle, goal=2 * idle_median + service,
            note=f"ratio {statistics.median(busy) / idle_median:.1f}x; one of A's requests takes {service:.0f} ms; "
            f"first come first served would wait about {IN_FLIGHT // CAPACITY} of them",
        ),
        summarize(
            "exactness: answered beyond a 500 limit (1,000 via 2 workers)", "requests", [float(abs(answered - 500))],
            baseline="exact: 0", baseline_samples=[0.0], goal=0.0, note=f"{answered} answered",
        ),
    ]  # fmt: skip
