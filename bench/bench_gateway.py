"""The gateway (`/v1/`) against the same requests sent straight to the model server, with LiteLLM's
proxy beside it on the same model server in the same run (bench/litellm_proxy.py): the whole app
as `make run` serves it (bench/gateway_run.py) and a real `mlx_lm.server` on the tiny model.

- added latency of a small non-streaming completion (p50, p95), 200 requests each, interleaved;
- added time to the first byte of a stream, 200 each, interleaved;
- 16 concurrent streams: total tokens per second direct ÷ through;
- the dashboard partial's p95 while the 16 streams through run, ÷ its idle p95 just before
  (each round; the three paths' order alternates between rounds).

`WEB_WORKER_CLASS=uvicorn.workers.UvicornWorker make bench` measures uvicorn's worker instead of
gunicorn's own `asgi` worker (docs/performance.md, "Serving")."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

import httpx

from bench.common import (
    Result,
    SessionClient,
    completion,
    concurrent_streams,
    first_byte,
    paired_difference,
    percentile,
    summarize,
)
from bench.gateway_run import GatewayRun
from bench.litellm_proxy import WORKERS, LiteLLMProxy, ensure_litellm, version

REQUESTS = 200
STREAMS = 16
STREAM_TOKENS = 100
ROUNDS = 5
MODEL = "tiny"  # the profile's name, and LiteLLM's model_name
DIRECT_MODEL = "default_model"


def _dashboard_polls(browser: SessionClient, more: Callable[[int], bool]) -> list[float]:
    """Milliseconds of the dashboard's partial, polled every 50 ms while `more(polls so far)`."""
    latencies: list[float] = []
    while more(len(latencies)):
        began = time.perf_counter()
        status, _ = browser.request("GET", "/servers/", headers={"HX-Request": "true"})
        if status != 200:
            raise RuntimeError(f"the dashboard answered {status}")
        latencies.append((time.perf_counter() - began) * 1000)
        time.sleep(0.05)
    return latencies


def _dashboard_until(browser: SessionClient, done: threading.Event, latencies: list[float]) -> None:
    latencies.extend(_dashboard_polls(browser, lambda n: n < 1 or not done.is_set()))


def _rate(base_url: str, headers: dict[str, str], model: str) -> float:
    return concurrent_streams(base_url, headers, model, streams=STREAMS, tokens=STREAM_TOKENS).rate


def _interleaved(paths: dict[str, Callable[[], float]], count: int) -> dict[str, list[float]]:
    """`count` samples of each path, one of each in turn, so the machine's load moves them alike."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(count):
        for name, measure in paths.items():
            samples[name].append(measure())
    return samples


def _paths(
    run: GatewayRun, litellm: httpx.Client | None, measure: Callable[[httpx.Client, str], float]
) -> dict[str, Callable[[], float]]:
    paths = {
        "through": lambda: measure(run.through, MODEL),
        "direct": lambda: measure(run.direct, DIRECT_MODEL),
    }
    if litellm is not None:
        paths["litellm"] = lambda: measure(litellm, MODEL)
    return paths


def run() -> list[Result]:
    worker = os.environ.get("WEB_WORKER_CLASS", "asgi")
    installed = ensure_litellm()
    print(f"  LiteLLM {version()}: {installed.note}", flush=True)
    with GatewayRun() as gateway:
        proxy = litellm = None
        if installed.litellm is not None:
            proxy = LiteLLMProxy(installed.litellm, gateway.root, name=MODEL, api_base=gateway.direct_url)
            try:
                proxy.wait_ready()
                litellm = httpx.Client(
                    base_url=f"{proxy.url}/v1", headers={"Authorization": f"Bearer {proxy.key}"}, timeout=60
                )
            except RuntimeError as failed:
                print(f"  {failed}: LiteLLM column skipped", flush=True)
                proxy.stop()
                proxy = None
        try:
            warm = _paths(gateway, litellm, completion)
            _interleaved(warm, 10)
            latency = _interleaved(warm, REQUESTS)
            ttfb = _interleaved(_paths(gateway, litellm, lambda c, m: first_byte(c, m, max_tokens=4)), REQUESTS)

            ratios, busy_p95, direct_p95, idle_p95 = _stream_rounds(gateway, proxy)
        finally:
            if proxy is not None:
                proxy.stop()
    results = _relay_figures(
        "gateway", "through", latency, ttfb, ratios, goals=True, note=f"worker {worker}, interleaved"
    )
    results.append(
        summarize(
            "gateway: dashboard p95 under 16 streams / idle",
            "x",
            busy_p95,
            baseline="the same while 16 streams go straight to the model server (its own load)",
            baseline_samples=direct_p95,
            goal=2.0,
            note=f"idle p95 (before each round) {statistics.median(idle_p95):.1f} ms, polls every 50 ms",
        )
    )
    if "litellm" in latency:
        note = f"LiteLLM {version()} proxy ({WORKERS} workers), same model server, interleaved; {installed.note}"
        results += _relay_figures("LiteLLM", "litellm", latency, ttfb, ratios, goals=False, note=note)
    return results


def _stream_rounds(
    gateway: GatewayRun, proxy: LiteLLMProxy | None
) -> tuple[dict[str, list[float]], list[float], list[float], list[float]]:
    """ROUNDS rounds of 16 streams direct, through (the dashboard polled meanwhile, and idle just
    before) and through LiteLLM, in an order that alternates: (direct ÷ each path's rates, the
    dashboard's p95 under streams through and direct ÷ idle, the idle p95s)."""
    browser = SessionClient(gateway.stack.port)
    browser.log_in()
    ratios: dict[str, list[float]] = {"through": [], "litellm": []}
    busy_p95, direct_p95, idle_p95 = [], [], []
    for round_number in range(ROUNDS):
        rates: dict[str, float] = {}
        order = ["direct", "through", "litellm"] if proxy is not None else ["direct", "through"]
        for path in order if round_number % 2 == 0 else order[::-1]:  # neither always first
            if path == "litellm" and proxy is not None:
                rates[path] = _rate(f"{proxy.url}/v1", {"Authorization": f"Bearer {proxy.key}"}, MODEL)
                continue
            idle_p95.append(percentile(_dashboard_polls(browser, lambda n: n < 60), 0.95))
            if path == "direct":
                rates[path], p95 = _polled_meanwhile(browser, lambda: _rate(gateway.direct_url, {}, DIRECT_MODEL))
                direct_p95.append(p95 / idle_p95[-1])
            else:
                rates[path], p95 = _polled_meanwhile(browser, lambda: _rate(gateway.through_url, gateway.auth(), MODEL))
                busy_p95.append(p95 / idle_p95[-1])
        for path in rates.keys() - {"direct"}:
            ratios[path].append(rates["direct"] / rates[path])
    return ratios, busy_p95, direct_p95, idle_p95


def _polled_meanwhile(browser: SessionClient, streams: Callable[[], float]) -> tuple[float, float]:
    """`streams()`'s rate, and the dashboard's p95 while it ran."""
    busy: list[float] = []
    done = threading.Event()
    dash = threading.Thread(target=_dashboard_until, args=(browser, done, busy))
    dash.start()
    try:
        rate = streams()
    finally:
        done.set()
        dash.join()
    return rate, percentile(busy, 0.95)


def _relay_figures(
    who: str,
    path: str,
    latency: dict[str, list[float]],
    ttfb: dict[str, list[float]],
    ratios: dict[str, list[float]],
    *,
    goals: bool,
    note: str,
) -> list[Result]:
    """A relay's three figures against the direct baseline; the goals are the gateway's own."""
    return [
        paired_difference(
            f"{who}: added latency, small completion", "ms", latency[path], latency["direct"],
            baseline="direct to the model server", goal=2.0 if goals else None, note=note,
        ),
        paired_difference(
            f"{who}: added time to first streamed byte", "ms", ttfb[path], ttfb["direct"],
            baseline="direct to the model server", goal=2.0 if goals else None, note=note,
        ),
        summarize(
            f"{who}: 16 streams, direct / through tokens per second", "x", ratios[path],
            baseline="", baseline_samples=[], goal=1.05 if goals else None,
            note=f"{note}; goal 1.05x: through keeps 0.95 of direct throughput" if goals else note,
        ),
    ]  # fmt: skip
