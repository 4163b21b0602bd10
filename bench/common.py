"""What the benchmarks share: figures with their same-run baselines, a signed-in HTTP client, and
the app as `make run` serves it with real model servers running.

Every figure is printed beside a baseline measured in the same run (ideally interleaved with it),
because the machine is shared and its load moves both. Reusable by any `bench/bench_*.py` module.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from testing.stack import Stack
from testing.tinymodel import make_tiny_model

PASSWORD = "bench-password-42"
LIVE_VERSION = re.compile(r'id="live-version" name="v" value="([^"]*)"')
KEEPALIVE_TRUST = 8.0  # seconds; gunicorn closes an idle keep-alive connection after 10 (gunicorn.conf.py)
EMAIL = "bench@example.com"


# --- figures ---


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Result:
    """One figure (median, p95, count) beside its same-run baseline; lower is better."""

    figure: str
    unit: str
    median: float
    p95: float
    count: int
    baseline: str = ""  # what the baseline is, in words
    baseline_median: float | None = None
    baseline_p95: float | None = None
    goal: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.median <= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def summarize(
    figure: str,
    unit: str,
    samples: list[float],
    *,
    baseline: str,
    baseline_samples: list[float],
    goal: float | None = None,
    note: str = "",
    **extra: Any,
) -> Result:
    if not samples:
        raise ValueError(f"{figure}: no samples")
    return Result(
        figure,
        unit,
        statistics.median(samples),
        percentile(samples, 0.95),
        len(samples),
        baseline,
        statistics.median(baseline_samples) if baseline_samples else None,
        percentile(baseline_samples, 0.95) if baseline_samples else None,
        goal,
        note,
        extra,
    )


def paired_difference(figure: str, unit: str, measured: list[float], against: list[float], **kw: Any) -> Result:
    """The median of per-pair differences (never clipped: a negative difference is reported as
    such), with its spread (5th and 95th percentile of the differences) in `extra`."""
    differences = [m - b for m, b in zip(measured, against, strict=True)]
    result = summarize(figure, unit, differences, baseline_samples=against, **kw)
    spread = {"p5": percentile(differences, 0.05), "p95": percentile(differences, 0.95)}
    iqr = {"q1": percentile(differences, 0.25), "q3": percentile(differences, 0.75)}
    return Result(**{**asdict(result), "extra": {**result.extra, "spread": spread, "iqr": iqr}})


def first_byte(client: httpx.Client, model: str, *, max_tokens: int) -> float:
    """Milliseconds from sending a streamed chat request to its first byte (the rest is read too)."""
    began = time.perf_counter()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "stream": True}
    with client.stream("POST", "/chat/completions", json=body) as answer:
        answer.raise_for_status()
        chunks = answer.iter_raw()
        next(chunks)
        elapsed = (time.perf_counter() - began) * 1000
        for _ in chunks:
            pass
    return elapsed


NO_EOS = {"2": -1000}  # the tiny model's </s> banned: a stream runs to max_tokens
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def completion(client: httpx.Client, model: str) -> float:
    """Milliseconds of one small non-streamed chat completion (one token)."""
    began = time.perf_counter()
    answer = client.post("/chat/completions", json={"model": model, **CHAT, "max_tokens": 1})
    answer.raise_for_status()
    return (time.perf_counter() - began) * 1000


def stream_tokens(base_url: str, headers: dict[str, str], model: str, tokens: int) -> tuple[int, bool]:
    """One stream of `tokens` tokens (the end token banned): (content chunks received, whether it
    ended with [DONE] after a 200). Raises on a refusal or a broken connection."""
    body = {"model": model, **CHAT, "max_tokens": tokens, "stream": True, "logit_bias": NO_EOS}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=600) as client,
        client.stream("POST", "/chat/completions", json=body) as answer,
    ):
        answer.raise_for_status()
        count, done = 0, False
        for line in answer.iter_lines():
            if line.startswith("data: {") and re.search(r'"content": ?"[^"]', line):
                count += 1
            done = done or line.strip() == "data: [DONE]"
    return count, done


@dataclass
class Streams:
    """What `concurrent_streams` saw: tokens per second over all streams, and how each ended."""

    rate: float
    counts: list[int]
    completed: int  # streams answered 200 that ended with [DONE]
    refused: list[str]  # what the failed ones said


def concurrent_streams(base_url: str, headers: dict[str, str], model: str, *, streams: int, tokens: int) -> Streams:
    """`streams` streams at once, each of `tokens` tokens: their total tokens per second."""
    counts: list[int] = []
    refused: list[str] = []
    finished: list[bool] = []

    def one() -> None:
        try:
            count, done = stream_tokens(base_url, headers, model, tokens)
        except (httpx.HTTPError, OSError) as failed:
            refused.append(repr(failed)[:200])
            return
        counts.append(count)
        finished.append(done)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Streams(sum(counts) / (time.perf_counter() - began), counts, sum(finished), refused)


# --- a signed-in client ---


class SessionClient:
    """One browser-like session: a cookie jar over one keep-alive connection, signed in through the
    login form; POSTs carry the CSRF token in the header htmx sends (`hx-headers` on <body>)."""

    def __init__(self, port: int, *, email: str = EMAIL, password: str = PASSWORD) -> None:
        self.port, self.email, self.password = port, email, password
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.last_headers: http.client.HTTPMessage | None = None
        self.used_at = time.monotonic()
        self.shown: dict[str, str] = {}  # path -> the version of the live part its last poll gave

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        all_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if time.monotonic() - self.used_at > KEEPALIVE_TRUST:
            self.connection.close()  # gunicorn may have closed it: a browser opens a fresh one too
        self.used_at = time.monotonic()
        try:
            self.connection.request(method, path, body=body, headers=all_headers)
            response = self.connection.getresponse()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # a fresh connection next time, as a browser would open
            raise
        text = response.read().decode(errors="replace")
        self.last_headers = response.headers
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, text

    def log_in(self) -> None:
        """Sign in through the form; raises when that did not work."""
        self.cookies.clear()
        _, page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if not token:
            raise RuntimeError("no CSRF token on the login page")
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token.group(1), "username": self.email, "password": self.password}
        )
        status, _ = self.request(
            "POST", "/accounts/login/", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 302:
            raise RuntimeError(f"login answered {status}")

    def poll_partial(self, path: str = "/servers/", *, whole: bool = False) -> tuple[int, str]:
        """A poll as the open page sends it: with the version its last answer gave (`v`), so the
        answer holds what changed since (servers/dashboard/render.py); `whole` sends none, as a first poll."""
        version = "" if whole else self.shown.get(path, "")
        query = "?" + urllib.parse.urlencode({"v": version}) if version else ""
        status, text = self.request("GET", path + query, headers={"HX-Request": "true"})
        if not whole:
            found = LIVE_VERSION.search(text)
            self.shown[path] = found.group(1) if found else ""
        return status, text

    def press(self, path: str) -> int:
        """A button's POST as htmx sends it from the dashboard."""
        status, _ = self.request(
            "POST",
            path,
            body="",
            headers={
                "HX-Request": "true",
                "X-CSRFToken": self.cookies.get("csrftoken", ""),
                "Referer": f"http://127.0.0.1:{self.port}/servers/",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        return status


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """(milliseconds, result) of one call."""
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def process_cpu_percent(process: psutil.Process, seconds: float) -> float:
    """The process's CPU use over a window, in % of one core."""
    before, t0 = process.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, t1 = process.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (t1 - t0)


# --- the app with real model servers ---


SEED = """
import json, sys
from accounts.models import User
from profiles.models import ServerProfile
User.objects.create_superuser(email={email!r}, password={password!r})
ids = [ServerProfile.objects.create(name=f"bench-{{i:02d}}", model={model!r}, port=port).pk
       for i, port in enumerate({ports!r})]
print(json.dumps(ids))
"""

# An hour of history for the servers now running, one sample every 10 s before the supervisor's own:
# what the dashboard reads after an hour of running (the supervisor keeps exactly an hour).
BACKFILL = """
from datetime import timedelta
from django.utils import timezone
from servers.models import Server, ServerSample
now = timezone.now()
for server in Server.objects.filter(state="running"):
    first = ServerSample.objects.filter(server=server).order_by("taken_at").values_list("taken_at", flat=True).first() or now
    ServerSample.objects.bulk_create(
        ServerSample(server=server, taken_at=first - timedelta(seconds=10 * i), rss_bytes=100_000_000 + 10_000 * i,
                     cpu_percent=float(i % 7))
        for i in range(1, 361) if first - timedelta(seconds=10 * i) > now - timedelta(hours=1)
    )
"""

STATES = """
import json
from servers.models import Server
print(json.dumps(dict(Server.objects.values_list("profile_id", "state"))))
"""


class RealStack:
    """gunicorn and `runsupervisor` under honcho (testing.stack.Stack, as `make run` starts them),
    with `profiles` profiles on the tiny model; `start_servers(n)` presses Start on the first n
    through the web and waits until the supervisor says they run."""

    def __init__(self, *, profiles: int) -> None:
        from testing.net import free_port

        self.root = Path(tempfile.mkdtemp(prefix="mlxm-bench-"))
        self.stack = Stack(self.root).start()
        self.model = make_tiny_model(self.root / "tiny-llama")
        ports: list[int] = []
        while len(ports) < profiles:  # the OS may hand out a port twice while none is bound yet
            if (port := free_port()) not in ports:
                ports.append(port)
        try:
            out = self.manage_shell(SEED.format(email=EMAIL, password=PASSWORD, model=str(self.model), ports=ports))
        except BaseException:
            self.stack.stop()  # not yet shared, so nobody else would stop it
            raise
        self.profile_ids: list[int] = json.loads(out.strip().splitlines()[-1])
        self.ports = dict(zip(self.profile_ids, ports, strict=True))
        self.client = SessionClient(self.stack.port)
        self.client.log_in()
        self.running: list[int] = []
        self.idle_cpu_without_servers: list[float] = []

    @property
    def port(self) -> int:
        return self.stack.port

    def manage_shell(self, code: str) -> str:
        return self.stack.manage("shell", "-c", code).stdout

    def states(self) -> dict[int, str]:
        return {int(k): v for k, v in json.loads(self.manage_shell(STATES).strip().splitlines()[-1]).items()}

    def supervisor(self) -> psutil.Process:
        assert self.stack.process is not None
        for child in psutil.Process(self.stack.process.pid).children(recursive=True):
            if "runsupervisor" in child.cmdline():
                return child
        raise RuntimeError("no runsupervisor under honcho")

    def start_servers(self, count: int, *, timeout: float = 600.0) -> None:
        wanted = self.profile_ids[:count]
        for pk in wanted:
            status = self.client.press(f"/servers/{pk}/start/")
            if status != 200:
                raise RuntimeError(f"Start of profile {pk} answered {status}")
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(pk) == "running" for pk in wanted):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"servers not running after {timeout:g} s: {states}")
            time.sleep(2)
        self.running = wanted
        self.manage_shell(BACKFILL)

    def close(self) -> None:
        from testing.supervisor import server_processes

        self.stack.stop()
        # The supervisor stops its servers on Ctrl-C; whatever outlived a forced end goes too.
        leftovers = [p for port in self.ports.values() for p in server_processes(port)]
        for process in leftovers:
            process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


_shared: RealStack | None = None
PROFILES, RUNNING = 50, 20
IDLE_WINDOW = 10.0  # two of the supervisor's 5 s cycles: a 5 s window caught one full pass or two


def shared_stack() -> RealStack:
    """One app for the benchmarks of a run that need 50 profiles and 20 real servers (starting 20
    servers is the slow part); `close_shared_stack()` ends it."""
    global _shared
    if _shared is None:
        _shared = RealStack(profiles=PROFILES)
        supervisor = _shared.supervisor()
        _shared.idle_cpu_without_servers = [process_cpu_percent(supervisor, IDLE_WINDOW) for _ in range(3)]
        try:
            _shared.start_servers(RUNNING)
        except BaseException:
            close_shared_stack()
            raise
    return _shared


def close_shared_stack() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None
