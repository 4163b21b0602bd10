"""The web app served by a real gunicorn (gunicorn.conf.py, as `make run` serves it) beside a
`supervisor_process`, on the pytest test database, and a small cookie-keeping HTTP client that
logs in and posts forms the way a browser without JavaScript does. Used by the fault drills, which
restart the web server on its own while the supervisor and the model servers keep running."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testing.net import free_port
from testing.stack import BIN, ensure_collected_static, wait_for_http
from testing.supervisor import BASE_DIR, supervisor_env


@dataclass
class WebServer:
    """`start()` runs gunicorn and returns once /healthz answers; `kill()` ends it with SIGKILL
    (master and workers), `stop()` with SIGINT as Ctrl-C does. Its output goes to `log_path`."""

    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> WebServer:
        ensure_collected_static(supervisor_env())
        env = {
            **supervisor_env(),
            "DJANGO_SETTINGS_MODULE": "mlxmanager.settings",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MLXM_WEB_PORT": str(self.port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "mlxmanager.asgi:application", "--config", "gunicorn.conf.py"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_http(f"{self.url}/healthz", timeout=timeout)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; gunicorn said:\n{self.output()[-3000:]}") from None
        return self

    def pids(self) -> set[int]:
        """The master and its workers (one process group)."""
        import psutil

        if self.process is None:
            return set()
        try:
            master = psutil.Process(self.process.pid)
            return {master.pid, *(child.pid for child in master.children(recursive=True))}
        except psutil.Error:
            return set()

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        # Not SIGTERM: gunicorn's graceful stop waits out every idle keep-alive connection (10 s
        # each time a test's HTTP client kept one open); SIGINT is its quick stop.
        self._end(signal.SIGINT)

    def _end(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Response:
    status: int
    text: str
    location: str = ""


class HttpClient:
    """A browser without JavaScript: keeps cookies, sends the CSRF token with every POST, and
    does not follow redirects by itself (the drills look at them)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect)

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.cookies if c.name == name), "")

    def request(self, method: str, path: str, data: dict[str, str] | None = None, *, timeout: float = 60.0) -> Response:
        body = None
        headers = {}
        if method == "POST":
            fields = {"csrfmiddlewaretoken": self.cookie("csrftoken"), **(data or {})}
            body = urllib.parse.urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=timeout) as answer:
                return Response(answer.status, answer.read().decode(errors="replace"))
        except urllib.error.HTTPError as answer:  # 3xx (not followed), 4xx, 5xx
            return Response(answer.code, answer.read().decode(errors="replace"), answer.headers.get("Location", ""))

    def get(self, path: str, *, timeout: float = 60.0) -> Response:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, data: dict[str, str] | None = None, *, timeout: float = 60.0) -> Response:
        return self.request("POST", path, data, timeout=timeout)

    def login(self, email: str, password: str) -> None:
        self.get("/accounts/login/")  # sets the CSRF cookie
        answer = self.post("/accounts/login/", {"username": email, "password": password})
        assert answer.status == 302, f"login answered {answer.status}: {answer.text[:500]}"


def card_facts(html: str, profile_id: int) -> dict[str, str]:
    """State and PID a server's card on the dashboard shows."""
    match = re.search(
        rf'<article class="server-card" id="server-card-{profile_id}" data-state="(?P<state>[a-z]+)">(?P<body>.*?)</article>',
        html,
        re.S,
    )
    if match is None:
        return {}
    pid = re.search(r'class="mono server-pid">\s*([^<]*?)\s*<', match["body"])
    return {"state": match["state"], "pid": pid[1] if pid else ""}
