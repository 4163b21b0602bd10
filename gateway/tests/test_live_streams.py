"""Streams through the gateway under faults and load, with the real `openai` client against
gunicorn and a real `mlx_lm.server`: the model server killed with SIGKILL mid-stream, the client
going away mid-stream, and 32 streams at once while a page still answers."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from gateway.models import UsageRecord
from gateway.tests.conftest import Live, start_profile
from servers.models import Server
from testing.supervisor import wait_for
from testing.tinymodel import make_tiny_model
from testing.web import HttpClient

pytestmark = pytest.mark.mlx

NO_EOS = {"logit_bias": {"2": -1000}}  # the tiny model's </s>: a stream runs to max_tokens


def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0, timeout=120)


def long_stream(live: Live) -> Any:
    return client(live).chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Tell a story"}],
        max_tokens=4000,
        stream=True,
        extra_body=NO_EOS,
    )


def connections_to(pid: int, port: int) -> int:
    """Established connections the model server holds on its port (the gateway's, one per request)."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


def test_client_going_away_closes_the_upstream_connection(live: Live) -> None:
    pid = Server.objects.get(profile=live.profile).pid
    assert pid is not None
    stream = long_stream(live)
    chunks = iter(stream)
    for _ in range(5):
        next(chunks)
    assert connections_to(pid, live.profile.port) >= 1
    stream.close()
    wait_for(lambda: connections_to(pid, live.profile.port) == 0, timeout=20, what="the upstream connection to close")
    wait_for(
        lambda: UsageRecord.objects.filter(status=499).exists(), timeout=20, what="a record of the abandoned stream"
    )
    record = UsageRecord.objects.get(status=499)
    assert record.stream and (record.completion_tokens or 0) < 4000


def test_model_server_killed_mid_stream_gives_the_client_an_error(live: Live) -> None:
    pid = Server.objects.get(profile=live.profile).pid
    assert pid is not None
    chunks = iter(long_stream(live))
    for _ in range(5):
        next(chunks)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(openai.APIError) as caught:
        for _ in chunks:
            pass
    assert "stopped in the middle" in str(caught.value) or "failed" in str(caught.value)
    wait_for(lambda: UsageRecord.objects.filter(status=502).exists(), timeout=20, what="the failed stream's record")
    assert UsageRecord.objects.get(status=502).error


# Long enough that no machine ends a stream before the test cuts it: the gateway caps max_tokens to
# the room the model's context leaves, so the model declares a context that has it.
OPEN_CONTEXT = 1 << 16
OPEN_TOKENS = OPEN_CONTEXT - 1000
STREAMS = 32
PAGES = 5


def test_32_streams_complete_while_pages_answer(live: Live, supervisor_process: Any, tmp_path: Path) -> None:
    """Pages answer while 32 streams are being relayed. The streams cannot end on their own while
    the pages are asked for (the end token banned, max_tokens beyond reach): the test cuts them
    once the pages have answered, so nothing depends on how fast the machine generates."""
    start_profile(make_tiny_model(tmp_path / "open-model", context=OPEN_CONTEXT), "open", supervisor_process)
    browser = HttpClient(live.web.url)
    assert browser.get("/accounts/login/").status == 200
    answer = browser.post("/accounts/login/", {"username": live.user.email, "password": "correct-horse-battery-42"})
    assert answer.status == 302, (
        answer.status,
        re.sub(r"<[^>]+>", " ", answer.text)[-1500:],
        [c.name for c in browser.cookies],
    )
    counts: list[int] = []  # tokens each stream had when it was cut
    opened: list[bool] = []  # one per stream that relayed its first token
    ended_early: list[str] = []  # streams that ended before the test cut them (must stay empty)
    errors: list[BaseException] = []
    cut = threading.Event()

    def one() -> None:
        try:
            stream = client(live).chat.completions.create(
                model="open",
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=OPEN_TOKENS,
                stream=True,
                extra_body=NO_EOS,
            )
            tokens = 0
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    tokens += 1
                    if tokens == 1:
                        opened.append(True)
                if cut.is_set():
                    break
                if chunk.choices and chunk.choices[0].finish_reason:
                    ended_early.append(chunk.choices[0].finish_reason)
            else:
                ended_early.append("the stream ended")
            stream.close()
            counts.append(tokens)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(opened) == STREAMS or bool(errors), timeout=300, what=f"{STREAMS} streams relaying")
        assert not errors, errors[:3]
        statuses = []
        for _ in range(PAGES):
            statuses.append(browser.get("/servers/", timeout=60).status)
            # Ordering, not speed (how fast is `make bench`'s figure): every stream still open.
            assert not ended_early, f"streams ended before the pages were answered: {ended_early[:3]}"
        assert statuses == [200] * PAGES, statuses
    finally:
        cut.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors[:3]
    assert len(counts) == STREAMS and all(n >= 1 for n in counts), counts
    wait_for(
        lambda: UsageRecord.objects.filter(status=499, stream=True).count() >= STREAMS,
        timeout=60,
        what=f"{STREAMS} records of the cut streams",
    )
