"""Load: 50 logged-in clients poll the dashboard partial for 60 s against gunicorn as `make run`
serves it (the default worker settings of gunicorn.conf.py), on a dashboard with 20 profiles."""

from __future__ import annotations

import http.client
import re
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from bench.common import Result, summarize
from testing.stack import Stack

CLIENTS = 50
SECONDS = 60.0
POLL_INTERVAL = 1.0  # the dashboard's fast poll
PASSWORD = "load-test-password-42"

SEED = f"""
from accounts.models import User
from profiles.models import ServerProfile
User.objects.create_superuser(email="load@example.com", password="{PASSWORD}")
for i in range(20):
    ServerProfile.objects.create(name=f"profile {{i}}", model="mlx-community/tiny-{{i}}", port=9000 + i)
"""


class Client:
    """One browser-like session: a cookie jar over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        all_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        self.connection.request(method, path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        text = response.read().decode(errors="replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, text

    def log_in(self) -> None:
        _, page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token.group(1), "username": "load@example.com", "password": PASSWORD}
        )
        status, _ = self.request(
            "POST", "/accounts/login/", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 302, f"login failed with {status}"


def poll(port: int, deadline: float, latencies: list[float], errors: list[str]) -> None:
    try:
        client = Client(port)
        client.log_in()
    except (OSError, AssertionError) as exc:
        errors.append(f"login: {exc!r}")
        return
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status, _ = client.request("GET", "/servers/", headers={"HX-Request": "true"})
            if status != 200:
                errors.append(f"HTTP {status}")
        except OSError as exc:
            errors.append(repr(exc))
            client = Client(port)
            client.log_in()
        elapsed = time.perf_counter() - started
        latencies.append(elapsed * 1000)
        time.sleep(max(0.0, POLL_INTERVAL - elapsed))


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="mlxm-load-") as root:
        stack = Stack(Path(root)).start()
        try:
            stack.manage("shell", "-c", SEED)
            latencies: list[float] = []
            errors: list[str] = []
            deadline = time.monotonic() + SECONDS
            threads = [
                threading.Thread(target=poll, args=(stack.port, deadline, latencies, errors)) for _ in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            stack.stop()
    note = f"{len(latencies)} requests from {CLIENTS} clients in {SECONDS:.0f} s, {len(errors)} errors"
    return [
        summarize("load: dashboard partial latency, 50 clients polling", "ms", latencies, 250.0, note),
        summarize("load: errors during the 60 s run", "n", [float(len(errors))], 0.0),
    ]
