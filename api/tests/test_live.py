"""The API against the live app (gunicorn, as `make run` serves it), a real supervisor, a real
`mlx_lm.server` on the tiny model and the Hub stand-in: a script's journey, `mlxm`, Schemathesis."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from accounts.models import User
from api.tests.conftest import KeyMaker
from testing.supervisor import BASE_DIR, wait_for
from testing.web import WebServer

pytestmark = pytest.mark.timeout(600)


@dataclass
class LiveApi:
    web: WebServer
    secret: str
    http: httpx.Client

    def env(self, key: str | None = None) -> dict[str, str]:
        return {**os.environ, "MLXM_URL": self.web.url, "MLXM_API_KEY": key or self.secret, "MLXM_CONFIG": "/dev/null"}

    def mlxm(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlxm", *args],
            cwd=BASE_DIR,
            env=self.env(key),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def mlxm_process(self, *args: str) -> subprocess.Popen[str]:
        """`mlxm` left running (`logs -f`), its output read line by line as it comes."""
        return subprocess.Popen(
            [sys.executable, "-m", "mlxm", *args],
            cwd=BASE_DIR,
            env={**self.env(), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=None,  # into the test's captured output: shown when the test fails
            text=True,
        )


def client(web: WebServer, secret: str) -> httpx.Client:
    return httpx.Client(base_url=web.url + "/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=30)


@pytest.fixture
def live_api(
    supervisor_process: Any, hub: Any, tmp_path: Path, make_user: Callable[..., User], make_key: KeyMaker
) -> Iterator[LiveApi]:
    supervisor_process.start()
    admin = make_user("admin@example.com", admin=True)
    secret = make_key(admin)
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        with client(web, secret) as http:
            yield LiveApi(web=web, secret=secret, http=http)
    finally:
        web.stop()


def test_a_script_makes_a_profile_starts_it_reads_health_and_stops_it(
    live_api: LiveApi, tiny_model: Path, supervisor_process: Any, make_user: Callable[..., User], make_key: KeyMaker
) -> None:
    http = live_api.http
    created = http.post("/profiles/", json={"name": "tiny", "model": str(tiny_model), "max_tokens": 16})
    assert created.status_code == 201, created.text
    profile = created.json()
    pk = profile["id"]

    clash = http.post("/profiles/", json={"name": "other", "model": str(tiny_model), "port": profile["port"]})
    assert clash.status_code == 400
    assert clash.json()["field"] == "port"
    assert clash.json()["detail"] == f"Port {profile['port']} is already used by the profile “tiny”."

    member_key = make_key(make_user("member@example.com"), manage=False)
    with client(live_api.web, member_key) as using_only:
        refused = using_only.post(f"/servers/{pk}/start")
        assert refused.status_code == 403 and "may only use models" in refused.json()["detail"]

    assert http.post(f"/servers/{pk}/start").json()["desired_state"] == "running"
    wait_for(lambda: http.get(f"/servers/{pk}").json()["state"] == "running", timeout=150, what="tiny to run")
    supervisor_process.remember_servers()
    wait_for(lambda: http.get(f"/servers/{pk}/health").json()["healthy"], timeout=60, what="a health check")
    health = http.get(f"/servers/{pk}/health").json()
    assert health["last_health_ms"] is not None and health["health_failures"] == 0

    ps = live_api.mlxm("ps")
    assert ps.returncode == 0, ps.stderr
    header, row = ps.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "PORT", "PID", "MEMORY"]
    assert row.split()[:3] == ["tiny", "running", str(profile["port"])]

    log = http.get(f"/servers/{pk}/log").json()
    assert not log["missing"] and log["text"]
    events = http.get(f"/servers/{pk}/events").json()
    assert {"action": "start", "by": "admin@example.com"}.items() <= events[-1].items()

    logs = live_api.mlxm("logs", "TINY")  # names ignore case
    # The log only grows (a health probe may have added a line since it was read above).
    assert logs.returncode == 0 and logs.stdout.startswith(log["text"]), logs.stdout[-500:]
    _mlxm_logs_follows_what_a_chat_request_makes_the_server_log(live_api, first_line=log["text"].splitlines()[0])

    stop = live_api.mlxm("stop", "tiny")
    assert (stop.returncode, stop.stdout) == (0, "tiny: stopping\n"), stop.stderr
    assert http.get(f"/servers/{pk}").json()["desired_state"] == "stopped"
    wait_for(lambda: http.get(f"/servers/{pk}").json()["state"] == "stopped", timeout=60, what="tiny to stop")
    again = http.post(f"/servers/{pk}/stop")
    assert again.status_code == 409 and again.json()["detail"] == "tiny is not running, so there is nothing to stop."


def _mlxm_logs_follows_what_a_chat_request_makes_the_server_log(live_api: LiveApi, *, first_line: str) -> None:
    """`mlxm logs tiny -f` prints the log so far, then, as a chat request makes the server write
    its request line, that line too; it runs until stopped (Ctrl-C)."""
    follow = live_api.mlxm_process("logs", "tiny", "-f")
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follow.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str:
        try:
            return lines.get(timeout=60)
        except queue.Empty:
            follow.kill()
            raise AssertionError("mlxm logs -f printed nothing new for 60 s") from None

    try:
        assert next_line().rstrip("\n") == first_line  # the lines written before it ran
        chat = httpx.post(
            live_api.web.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {live_api.secret}"},
            json={"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3},
            timeout=60,
        )
        assert chat.status_code == 200, chat.text
        while '"POST /v1/chat/completions HTTP/1.1" 200' not in next_line():
            pass
        assert follow.poll() is None, "mlxm logs -f ended by itself"
    finally:
        follow.send_signal(signal.SIGINT)
        status = follow.wait(timeout=30)
    assert status == 130  # Ctrl-C: stopped quietly, as `tail -f` is


def test_mlxm_pull_shows_progress_and_ls_lists_the_model(live_api: LiveApi) -> None:
    pulled = live_api.mlxm("pull", "mlx-community/Medium-Model-8bit")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    lines = pulled.stdout.splitlines()
    assert lines[-1] == "mlx-community/Medium-Model-8bit: downloaded"
    assert any(line.endswith("100.0% 6.3 MB/6.3 MB completed") and "[" + "#" * 30 + "]" in line for line in lines)
    listed = live_api.mlxm("ls")
    assert "mlx-community/Medium-Model-8bit" in listed.stdout and "6.3 MB" in listed.stdout
    missing = live_api.mlxm("pull", "not a repo")
    assert missing.returncode == 1
    assert "is not a Hugging Face repo id" in missing.stderr and "(HTTP 400)" in missing.stderr
    refused = live_api.mlxm("ps", key="mlxm_wrong")
    assert refused.returncode == 1 and "API key" in refused.stderr and "(HTTP 401)" in refused.stderr


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(
    live_api: LiveApi, tiny_model: Path, tmp_path: Path
) -> None:
    live_api.http.post("/profiles/", json={"name": "tiny", "model": str(tiny_model)}).raise_for_status()
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            live_api.web.url + "/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {live_api.secret}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "6",
            "--seed",
            "17",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "st"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:] + "\n" + live_api.web.output()[-3000:]
    report = ElementTree.parse(next((tmp_path / "st").glob("*.xml"))).getroot()
    cases = report.findall(".//testcase")
    names = {case.get("name", "") for case in cases}
    assert len(cases) >= 35 and any("/servers/{profile_id}/start" in name for name in names), names
    assert any("/users/{user_id}/grant-permission" in name for name in names), names
    assert not report.findall(".//failure") and not report.findall(".//error")
