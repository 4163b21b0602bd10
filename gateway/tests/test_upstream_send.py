"""The gateway's POST to a model server when the connection is reset before any answer, as
mlx-lm's server does to connections beyond its listen backlog of 5 when a burst arrives (seen as one
502 among 32 concurrent streams): sent once more, and only once. A real socket server that resets
the first connections it is given stands in for the overflowing server."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.upstream import upstream_send

ANSWER = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{"ok": true}'
)


def send(url: str) -> httpx.Response:
    """`upstream_send` on an event loop of its own, in a thread (a browser test's Playwright may have left
    one running in this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, upstream_send(url, {"model": "m"}, stream=False)).result()


@pytest.fixture
def resetting_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """Resets the first `resets` connections after reading the request (RST, no answer), then
    answers; yields its URL and what it did with each connection."""
    resets: int = request.param
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                if len(seen) < resets:
                    seen.append("reset")
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    seen.append("answered")
                    connection.sendall(ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions", seen
    listener.close()


@pytest.mark.parametrize("resetting_server", [1], indirect=True)
def test_a_connection_reset_before_the_answer_is_sent_once_more(resetting_server: tuple[str, list[str]]) -> None:
    url, seen = resetting_server
    answer = send(url)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert seen == ["reset", "answered"]


@pytest.mark.parametrize("resetting_server", [2], indirect=True)
def test_a_second_reset_is_the_clients_error(resetting_server: tuple[str, list[str]]) -> None:
    url, seen = resetting_server
    with pytest.raises(httpx.ReadError):
        send(url)
    assert seen == ["reset", "reset"]
