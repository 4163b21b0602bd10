"""The supervisor's cost, as a user meets it, on the app `make run` serves (50 profiles, 20 real
servers running):

- Start-to-ready through the manager: from the moment the browser's POST of Start leaves the client
  to the moment the probe that proved the server ready returned (the supervisor stamps the
  `running` transition with that moment). Baseline, interleaved round by round: the same argv
  spawned by hand and proved ready the same way (/health every 20 ms, the supervisor's start-probe
  interval, then one token). The figure is the paired difference, never clipped, with its spread.
- Idle CPU with 20 servers running, beside the same supervisor process idle with none.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    IDLE_WINDOW,
    RUNNING,
    RealStack,
    Result,
    paired_difference,
    process_cpu_percent,
    shared_stack,
    summarize,
)

ROUNDS = 12
IDLE_WINDOWS = 6
PROBE_INTERVAL = 0.02  # Policy.start_probe_interval


def run() -> list[Result]:
    app = shared_stack()
    supervisor = app.supervisor()
    idle = [process_cpu_percent(supervisor, IDLE_WINDOW) for _ in range(IDLE_WINDOWS)]
    profile_id = app.profile_ids[RUNNING]  # the first profile not running
    manager: list[float] = []
    by_hand: list[float] = []
    for round_ in range(ROUNDS):
        # Alternate the order so neither side always follows the other's shutdown.
        if round_ % 2:
            by_hand.append(_by_hand(app, profile_id))
            manager.append(_through_manager(app, profile_id))
        else:
            manager.append(_through_manager(app, profile_id))
            by_hand.append(_by_hand(app, profile_id))
    return [
        summarize(
            "supervisor: Start to ready through the web",
            "ms",
            manager,
            baseline="the same argv by hand: /health every 20 ms, then one token",
            baseline_samples=by_hand,
            note=f"{ROUNDS} interleaved rounds with {RUNNING} other servers running",
        ),
        paired_difference(
            "supervisor: added Start-to-ready (paired, manager - by hand)",
            "ms",
            manager,
            by_hand,
            baseline="by hand",
            goal=100.0,
            note="median of per-round differences, not clipped; spread (p5, p95) in results.json",
        ),
        summarize(
            f"supervisor: idle CPU with {RUNNING} real servers",
            "%",
            idle,
            baseline="the same supervisor with no server running",
            baseline_samples=app.idle_cpu_without_servers,
            goal=1.0,
            note=f"% of one core over {IDLE_WINDOWS} windows of {IDLE_WINDOW:g} s",
        ),
    ]


def _db(app: RealStack) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{app.stack.data_dir / 'db.sqlite3'}?mode=ro", uri=True, timeout=30)


def _row(app: RealStack, profile_id: int) -> tuple[str, str | None, str]:
    with _db(app) as db:
        row = db.execute(
            "SELECT state, state_changed_at, cmdline FROM servers_server WHERE profile_id = ?", (profile_id,)
        ).fetchone()
    return row or ("stopped", None, "[]")


def _wait_state(app: RealStack, profile_id: int, state: str, timeout: float = 120.0) -> tuple[str, str | None, str]:
    deadline = time.monotonic() + timeout
    while (row := _row(app, profile_id))[0] != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"profile {profile_id} not {state} after {timeout:g} s (it is {row[0]})")
        time.sleep(0.05)
    return row


def _through_manager(app: RealStack, profile_id: int) -> float:
    pressed = time.time()
    status = app.client.press(f"/servers/{profile_id}/start/")
    if status != 200:
        raise RuntimeError(f"Start answered {status}")
    _, ready_at, _ = _wait_state(app, profile_id, "running")
    assert ready_at is not None
    ready = datetime.fromisoformat(ready_at).replace(tzinfo=UTC).timestamp()
    if app.client.press(f"/servers/{profile_id}/stop/") != 200:
        raise RuntimeError("Stop was refused")
    _wait_state(app, profile_id, "stopped")
    return (ready - pressed) * 1000


def _by_hand(app: RealStack, profile_id: int) -> float:
    from servers.supervisor.host import RealHost, model_server_env

    _, _, cmdline = _row(app, profile_id)
    argv = json.loads(cmdline) if cmdline else None
    if not argv:  # no manager round yet: run one to learn the argv the supervisor uses
        _through_manager(app, profile_id)
        argv = json.loads(_row(app, profile_id)[2])
    host, port = "127.0.0.1", app.ports[profile_id]
    probe = RealHost()
    started = time.time()
    with open(Path(app.root) / "by-hand.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=model_server_env(os.environ)
        )
    try:
        deadline = time.monotonic() + 120
        while not probe.health(host, port, timeout=2.0).ok:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server by hand did not come up (exit {proc.returncode})")
            time.sleep(PROBE_INTERVAL)
        # Ready means what the supervisor means: the model answered one token.
        if probe.generate_one(host, port, timeout=120).result() is not None:
            raise RuntimeError("the server by hand did not answer one token")
        return (time.time() - started) * 1000
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
