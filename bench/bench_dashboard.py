"""The dashboard's polled partial as a signed-in user meets it: through gunicorn as `make run`
serves it, 50 profiles, 20 real `mlx_lm.server` processes running with an hour of samples, one
client polling for a minute as the open page does: each poll sends back the version the last
answer gave, and the answer holds what changed since (a few figures, or nothing). Cache hits and
misses of the sparklines are timed as they occur (the response's Server-Timing header says which).
Interleaved with those, the whole live part (no version sent, as a page's first poll) is timed too.
Then one more minute at the page's own pace (every `data-poll` seconds, 5 when nothing is starting):
every running card's figures have changed between two such polls, which a poll four times a second
hides. Baseline: `/healthz` on the same gunicorn, interleaved request by request (what any request
costs there)."""

from __future__ import annotations

import os
import re
import statistics
import time

from bench.common import RUNNING, Result, SessionClient, shared_stack, summarize, timed

SECONDS = 60.0
PAUSE = 0.25  # between rounds: four polls a second, so a minute holds enough of them
GOAL_MS = 15.0


def run() -> list[Result]:
    app = shared_stack()
    client = SessionClient(app.port)
    client.log_in()
    hits: list[float] = []
    misses: list[float] = []
    every: list[float] = []
    floor: list[float] = []
    whole: list[float] = []
    sizes: list[int] = []
    deadline = time.monotonic() + SECONDS
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        # Alternate which goes first, so neither always meets a warmer or colder worker.
        for which in ("dashboard", "healthz", "whole") if round_ % 2 else ("whole", "healthz", "dashboard"):
            if which == "healthz":
                ms, (status, _) = timed(lambda: client.request("GET", "/healthz"))
                _check(status == 200, f"/healthz answered {status}")
                floor.append(ms)
                continue
            if which == "whole":
                ms, (status, body) = timed(lambda: client.poll_partial(whole=True))
                _check(status == 200 and "bench-49" in body, f"the whole partial answered {status}")
                whole.append(ms)
                continue
            ms, (status, body) = timed(client.poll_partial)
            _check(status == 200 and 'id="live-version"' in body, f"the partial answered {status}")
            every.append(ms)
            sizes.append(len(body))
            timing = client.last_headers.get("Server-Timing", "") if client.last_headers else ""
            (hits if "cached" in timing else misses).append(ms)
        time.sleep(PAUSE)
    paced, paced_floor = _at_the_pages_pace(client)
    figure = f"dashboard partial, 50 profiles / {RUNNING} real servers"
    base = "GET /healthz, same gunicorn, interleaved"
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    return [
        summarize(
            figure,
            "ms",
            every,
            baseline=base,
            baseline_samples=floor,
            goal=GOAL_MS,
            note=f"every poll of a minute, cache hits and misses as they came ({len(misses)} misses); "
            f"answers of {statistics.median(sizes) / 1000:.1f} kB (median); {load}",
        ),
        summarize(
            f"{figure}, the whole live part",
            "ms",
            whole,
            baseline=base,
            baseline_samples=floor,
            note="no version sent, as a page's first poll: all 50 cards (what every poll was before)",
        ),
        summarize(f"{figure}, sparkline cache hits", "ms", hits, baseline=base, baseline_samples=floor),
        summarize(f"{figure}, sparkline cache misses", "ms", misses, baseline=base, baseline_samples=floor),
        summarize(
            f"{figure}, at the page's own pace",
            "ms",
            paced,
            baseline=base,
            baseline_samples=paced_floor,
            note="one poll every data-poll seconds for a minute, as the open page polls",
        ),
    ]


def _at_the_pages_pace(client: SessionClient) -> tuple[list[float], list[float]]:
    paced: list[float] = []
    floor: list[float] = []
    pace = 5  # the whole live part says its pace (data-poll); an answer of changes keeps it
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        ms, (status, body) = timed(client.poll_partial)
        _check(status == 200 and 'id="live-version"' in body, f"the partial answered {status}")
        paced.append(ms)
        ms, (status, _) = timed(lambda: client.request("GET", "/healthz"))
        floor.append(ms)
        said = re.search(r'data-poll="(\d+)"', body)
        pace = int(said.group(1)) if said else pace
        time.sleep(pace)
    return paced, floor


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(message)
