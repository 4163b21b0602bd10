"""The supervisor's cost: start-to-ready through the manager against by hand, and idle CPU.

Runs in a child Python process with its own temporary data directory and database (so the
benchmark never touches the real ones): `python -m bench.bench_supervisor --inner` prints JSON.

- Start-to-ready through the manager: from the moment Start is recorded (the action event) to the
  moment the state is `running` (the transition event), with a real `runsupervisor` process.
- By hand: spawn the same argv, poll GET /health every 10 ms until it answers 200, then ask for one
  token (what the manager calls ready: the model has answered).
- Interleaved, one of each per round; the added latency is the per-round difference.
- Idle CPU: the supervisor process's CPU time over several windows with 10 servers running.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, summarize

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 15
IDLE_SERVERS = 10
IDLE_WINDOWS = 6
IDLE_WINDOW_SECONDS = 5.0


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="mlxm-bench-") as tmp:
        env = {**os.environ, "MLXM_DATA_DIR": str(Path(tmp) / "data"), "HF_HOME": str(Path(tmp) / "hf")}
        env.pop("DATABASE_URL", None)
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_supervisor", "--inner", tmp],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if out.returncode != 0:
            raise RuntimeError(f"bench_supervisor failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
    manager, by_hand, idle = data["manager_ms"], data["by_hand_ms"], data["idle_cpu_percent"]
    # Runs are interleaved (manager, by hand, manager, ...): the difference within each pair cancels
    # most of what the machine's load does to both, so its median is the figure to judge.
    added = [m - h for m, h in zip(manager, by_hand, strict=False)]
    ratio = statistics.median(manager) / statistics.median(by_hand)
    return [
        summarize("supervisor: start-to-ready through the manager", "ms", manager, None, f"{len(manager)} runs"),
        summarize("supervisor: start-to-ready by hand (/health 10 ms + 1 token)", "ms", by_hand, None),
        summarize(
            "supervisor: added start-to-ready (paired manager - by hand)",
            "ms",
            added,
            100.0,
            f"manager/by-hand ratio of medians {ratio:.2f}",
        ),
        summarize(
            "supervisor: its own overhead (acting on Start + noticing ready)",
            "ms",
            data["overhead_ms"],
            100.0,
            "measured in the manager runs against a 10 ms /health poller + 1 token",
        ),
        summarize(
            f"supervisor: idle CPU with {IDLE_SERVERS} servers running",
            "%",
            idle,
            1.0,
            f"% of one core, {IDLE_WINDOWS} windows of {IDLE_WINDOW_SECONDS:g} s",
        ),
    ]


# --- the child process ---


def _wait(predicate: Any, timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(str(predicate))
        time.sleep(interval)


def _inner(tmp: Path) -> dict[str, list[float]]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxmanager.settings")
    django.setup()
    from django.core.management import call_command

    from profiles.argv import build_server_argv
    from profiles.models import ServerProfile
    from servers.models import Server, ServerEvent, SupervisorHeartbeat
    from servers.services import server_start, server_stop
    from testing.net import free_port
    from testing.supervisor import answers_one_token, health_ok
    from testing.tinymodel import make_tiny_model

    call_command("migrate", verbosity=0)
    model = make_tiny_model(tmp / "tiny-llama")
    log = open(tmp / "supervisor.log", "ab")  # noqa: SIM115 - the child keeps it
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "runsupervisor"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait(lambda: SupervisorHeartbeat.objects.filter(pid=supervisor.pid).exists(), 60)
        profile = ServerProfile.objects.create(name="bench", model=str(model), port=free_port())
        server = Server.objects.create(profile=profile)

        def state() -> str:
            return Server.objects.values_list("state", flat=True).get(pk=server.pk)

        manager_ms: list[float] = []
        by_hand_ms: list[float] = []
        overhead_ms: list[float] = []
        for _ in range(ROUNDS):
            # Through the manager, with the same poller (/health every 10 ms, then one token) running
            # beside it as by hand, which also tells when the server was ready, so the manager's own overhead shows:
            # (asked -> acted on) + (ready -> marked running).
            server_start(profile=profile, by=None)
            _wait(lambda: health_ok(profile.port), 120, interval=0.01)
            _wait(lambda: answers_one_token(profile.port), 120, interval=0.01)
            seen_ready = time.time()
            _wait(lambda: state() == "running", 60)
            events = ServerEvent.objects.filter(server=server)
            asked = events.filter(action="start").latest("id").created_at.timestamp()
            acted = events.filter(to_state="starting").latest("id").created_at.timestamp()
            ready = events.filter(to_state="running").latest("id").created_at.timestamp()
            manager_ms.append((ready - asked) * 1000)
            overhead_ms.append(((acted - asked) + max(ready - seen_ready, 0.0)) * 1000)
            server_stop(profile=profile, by=None)
            _wait(lambda: state() == "stopped", 60)

            started = time.perf_counter()
            with open(tmp / "by-hand.log", "ab") as hand_log:
                proc = subprocess.Popen(
                    build_server_argv(profile), stdout=hand_log, stderr=subprocess.STDOUT, start_new_session=True
                )
            _wait(lambda: health_ok(profile.port), 120, interval=0.01)
            _wait(lambda: answers_one_token(profile.port), 120, interval=0.01)
            by_hand_ms.append((time.perf_counter() - started) * 1000)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

        profiles = [
            ServerProfile.objects.create(name=f"idle-{n}", model=str(model), port=free_port())
            for n in range(IDLE_SERVERS)
        ]
        for p in profiles:
            server_start(profile=p, by=None)
        _wait(lambda: Server.objects.filter(profile__in=profiles, state="running").count() == IDLE_SERVERS, 300, 0.2)
        import psutil

        watched = psutil.Process(supervisor.pid)
        time.sleep(IDLE_WINDOW_SECONDS)  # let the start-up settle
        idle: list[float] = []
        for _ in range(IDLE_WINDOWS):
            before, t0 = watched.cpu_times(), time.monotonic()
            time.sleep(IDLE_WINDOW_SECONDS)
            after, t1 = watched.cpu_times(), time.monotonic()
            used = (after.user - before.user) + (after.system - before.system)
            idle.append(100 * used / (t1 - t0))
        return {
            "manager_ms": manager_ms,
            "by_hand_ms": by_hand_ms,
            "overhead_ms": overhead_ms,
            "idle_cpu_percent": idle,
        }
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(120)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        log.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        print(json.dumps(_inner(Path(sys.argv[2]))))
