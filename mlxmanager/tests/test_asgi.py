"""The pages' path through `mlxmanager.asgi.application`, called as gunicorn's worker calls it:
the request signals run in the pool thread that runs the view (where its database connection
lives), and a streamed response is sent whole and closed only after its last part."""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.test import Client

from accounts.models import User
from audit.models import AuditKind
from audit.services import audit_record
from mlxmanager.asgi import application
from profiles.models import ServerProfile
from servers.logs import server_log_path


def _get(path: str, *, query: bytes = b"", cookie: str = "") -> tuple[int, bytes]:
    """One GET through the app, on an event loop of its own in a thread of its own (a browser
    test's Playwright may have left one running in this one)."""
    headers = [(b"host", b"testserver")] + ([(b"cookie", cookie.encode())] if cookie else [])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }

    async def exchange() -> tuple[int, bytes]:
        talk = ApplicationCommunicator(application, scope)
        await talk.send_input({"type": "http.request", "body": b""})
        start = await talk.receive_output(20)
        body = b""
        while True:
            part = await talk.receive_output(20)
            body += part.get("body", b"")
            if not part.get("more_body"):
                break
        await talk.wait(20)
        return start["status"], body

    with ThreadPoolExecutor(1) as loop_thread:
        return loop_thread.submit(asyncio.run, exchange()).result()


@pytest.fixture
def signal_threads() -> Iterator[list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    def started(**_: Any) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**_: Any) -> None:
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def test_a_page_request_runs_its_signals_in_the_thread_of_its_view(
    transactional_db: Any, signal_threads: list[tuple[str, str]]
) -> None:
    status, body = _get("/healthz")
    assert status == 200, body
    assert [event for event, _ in signal_threads] == ["started", "finished"]
    threads = {name for _, name in signal_threads}
    assert len(threads) == 1 and threads.pop().startswith("pages"), signal_threads


def test_a_streamed_page_is_sent_whole_and_closed_after_its_last_part(
    transactional_db: Any, make_user: Callable[..., User], signal_threads: list[tuple[str, str]]
) -> None:
    admin = make_user("admin@example.com", admin=True)
    for n in range(300):
        audit_record(kind=AuditKind.PROFILE, action="edit", subject=f"profile {n}", by=admin, message="x" * 200)
    browser = Client()
    browser.force_login(admin)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    signal_threads.clear()

    status, body = _get("/audit/", query=b"format=csv", cookie=cookie)

    assert status == 200
    rows = body.decode().splitlines()
    assert len(rows) == 301 and rows[-1].endswith("x" * 200), rows[:2]
    assert [event for event, _ in signal_threads] == ["started", "finished"]
    assert all(name.startswith("pages") for _, name in signal_threads), signal_threads


# The pages' handler (mlxmanager/asgi.py, SyncPagesHandler) subclasses Django's ASGIHandler: it
# replaces `__call__` and `handle` and calls these, as Django 5.2 defines them. It is kept for what
# it measured (a page 11.6 -> 2.8 ms in-process, docs/performance.md, "Serving"); a Django upgrade
# that renames or reshapes one of them must fail here, by name, not in production.
ASGI_HANDLER_INTERNALS = {
    "__call__": (["self", "scope", "receive", "send"], True),
    "handle": (["self", "scope", "receive", "send"], True),
    "read_body": (["self", "receive"], True),
    "create_request": (["self", "scope", "body_file"], False),
    "get_response": (["self", "request"], False),
    "send_response": (["self", "response", "send"], True),
    "load_middleware": (["self", "is_async"], False),
}


def test_the_django_internals_the_pages_handler_relies_on_are_unchanged() -> None:
    found = {
        name: (
            list(inspect.signature(getattr(ASGIHandler, name)).parameters),
            inspect.iscoroutinefunction(getattr(ASGIHandler, name)),
        )
        for name in ASGI_HANDLER_INTERNALS
    }
    assert found == ASGI_HANDLER_INTERNALS, "Django's ASGIHandler changed: update mlxmanager/asgi.py's SyncPagesHandler"
    assert isinstance(ASGIHandler.chunk_size, int)
    assert list(inspect.signature(get_script_prefix).parameters) == ["scope"]


def test_streamed_pages_and_files_are_sent_without_the_sync_iterator_warning(
    transactional_db: Any, make_user: Callable[..., User]
) -> None:
    """Django warns ("StreamingHttpResponse must consume synchronous iterators") for each sync
    iterator an ASGI handler sends, and `make run` printed it for the audit CSV, a log download and
    the static files: the pages' handler pulls each part in its own threads instead."""
    admin = make_user("admin@example.com", admin=True)
    audit_record(kind=AuditKind.PROFILE, action="edit", subject="profile 1", by=admin, message="x")
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    log = server_log_path(profile.pk)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"line\n" * 50_000)  # several parts
    browser = Client()
    browser.force_login(admin)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        csv_status, csv_body = _get("/audit/", query=b"format=csv", cookie=cookie)
        log_status, log_body = _get(f"/servers/{profile.pk}/log/download/", cookie=cookie)
    assert csv_status == 200 and b"profile 1" in csv_body
    assert log_status == 200 and log_body == log.read_bytes()
    said = [str(w.message) for w in caught if "synchronous iterators" in str(w.message)]
    assert not said, said
