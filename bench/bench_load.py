"""Load: 50 signed-in clients poll the dashboard partial once a second (the dashboard's fast
poll) for a minute, as the open page polls (each sends back the version its last answer gave), against
gunicorn as `make run` serves it with 50 profiles and 20 real servers.
A failed request or a failed re-login counts as an error, never as a latency. Baseline: one more
client polling `/healthz` through the same minute (what any request costs under that load)."""

from __future__ import annotations

import threading
import time

from bench.common import RUNNING, Result, SessionClient, shared_stack, summarize, timed

CLIENTS = 50
SECONDS = 60.0
POLL_INTERVAL = 1.0


def poll(client: SessionClient, path: str, deadline: float, latencies: list[float], errors: list[str]) -> None:
    signed_in = True
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            if not signed_in and path != "/healthz":
                client.log_in()
                signed_in = True
            if path == "/healthz":
                ms, (status, body) = timed(lambda: client.request("GET", path))
            else:
                ms, (status, body) = timed(lambda: client.poll_partial(path))
            if status == 200 and (path == "/healthz" or 'id="live-version"' in body):
                latencies.append(ms)
            else:
                errors.append(f"HTTP {status}")
                signed_in = False  # a 302 to the login page: sign in again
        except (OSError, RuntimeError) as exc:
            errors.append(f"{'re-login' if not signed_in else 'request'}: {exc!r}")
            signed_in = False
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))


def run() -> list[Result]:
    app = shared_stack()
    # Signed in before the minute starts, as people who have the dashboard open are; signing in
    # (a deliberately slow password hash) during the minute is a re-login, counted as an error.
    clients = [SessionClient(app.port) for _ in range(CLIENTS)]
    for client in clients:
        client.log_in()
    latencies: list[float] = []
    errors: list[str] = []
    floor: list[float] = []
    floor_errors: list[str] = []
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=poll, args=(c, "/servers/", deadline, latencies, errors)) for c in clients]
    floor_client = SessionClient(app.port)
    threads.append(threading.Thread(target=poll, args=(floor_client, "/healthz", deadline, floor, floor_errors)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = sorted({e.split(":")[0] for e in errors})
    note = f"{len(latencies)} answered polls from {CLIENTS} clients in {SECONDS:.0f} s; errors: {len(errors)} {kinds}"
    return [
        summarize(
            f"load: dashboard partial, {CLIENTS} clients / {RUNNING} real servers",
            "ms",
            latencies,
            baseline="GET /healthz by one more client, same minute",
            baseline_samples=floor,
            goal=250.0,
            note=note,
        ),
        summarize(
            "load: errors in the minute (failed requests and re-logins)",
            "n",
            [float(len(errors))],
            baseline="errors of the /healthz client",
            baseline_samples=[float(len(floor_errors))],
            goal=0.0,
        ),
    ]
