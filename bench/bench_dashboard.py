"""Server-side time of the dashboard's polled partial with 50 profiles and 20 running servers,
each with an hour of samples (one every 10 s), on a throwaway database."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from django.db import connection
from django.test import Client

from bench.common import Result, summarize
from servers.dashboard import SERIES_CACHE_SECONDS

PROFILES, RUNNING, ROUNDS, WARMUP = 50, 20, 200, 20
GOAL_MS = 15.0


def run() -> list[Result]:
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        client = _seed()
        for _ in range(WARMUP):
            _get(client)
        wall, cpu = [], []
        for _ in range(ROUNDS):
            began, began_cpu = time.perf_counter(), time.process_time()
            _get(client)
            wall.append((time.perf_counter() - began) * 1000)
            cpu.append((time.process_time() - began_cpu) * 1000)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    figure = f"dashboard partial, {PROFILES} profiles / {RUNNING} running"
    return [
        summarize(
            figure,
            "ms",
            wall,
            GOAL_MS,
            note=f"{ROUNDS} GETs /servers/ (HX-Request) through the test client, sessions and auth included; "
            f"{RUNNING * 360} samples in the last hour, the sparklines recomputed every "
            f"{SERIES_CACHE_SECONDS} s as in production; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        ),
        summarize(
            f"{figure}, CPU time",
            "ms",
            cpu,
            None,
            note="the process's own CPU time per request (SQLite runs in-process): what the wall time would be "
            "on an idle machine",
        ),
    ]


def _seed() -> Client:
    from accounts.models import User, UserStatus
    from profiles.models import ServerProfile
    from servers.models import ServerState
    from servers.tests.factories import add_samples, set_server

    others = [ServerState.STOPPED, ServerState.FATAL, ServerState.BACKOFF, ServerState.STARTING, ServerState.STOPPING]
    for i in range(PROFILES):
        profile = ServerProfile.objects.create(
            name=f"bench-{i:02d}", model=f"mlx-community/Bench-{i}-4bit", port=30000 + i
        )
        if i < RUNNING:
            add_samples(set_server(profile, ServerState.RUNNING), count=360, every=timedelta(seconds=10))
        else:
            set_server(profile, others[i % len(others)], last_error="exited" if i % 2 else "")
    user = User.objects.create_user(email="bench@example.com", password="bench-password-42", status=UserStatus.APPROVED)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def _get(client: Client) -> None:
    response = client.get("/servers/", headers={"HX-Request": "true"})
    assert response.status_code == 200, response.status_code
