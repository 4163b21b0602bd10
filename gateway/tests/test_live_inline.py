"""No fetching on a client's behalf: media given as a URL is refused before any model server sees
it, through the real `openai` and `anthropic` SDKs, gunicorn and a real `mlx_lm.server`, with a real
listener behind the URL that must never be contacted."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import openai
import pytest

from gateway.tests.conftest import Live
from gateway.tests.test_live_clients import ant, anthropic_error, oai, openai_error

pytestmark = pytest.mark.mlx


class Listener:
    """A TCP listener on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.got_one = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            conn.close()
            self.got_one.set()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        self.sock.close()
        self.thread.join()


@pytest.fixture
def listener() -> Iterator[Listener]:
    served = Listener()
    try:
        yield served
    finally:
        served.close()


def test_media_urls_are_refused_and_never_fetched(live: Live, listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/secret.png"
    for address in (url, url.replace("http:", "https:"), "file:///etc/passwd", f"ftp://127.0.0.1:{listener.port}/x"):
        parts: Any = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": address}},
        ]
        o = openai_error(
            lambda parts=parts: oai(live).chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": parts}], max_tokens=2
            )
        )
        assert o.status_code == 400 and isinstance(o, openai.BadRequestError)
        message = str(cast(dict[str, Any], o.body)["message"])
        assert message.startswith("messages[0].content[1].image_url.url:") and "inline" in message, message
        o = openai_error(  # the Responses API's input_image: the same rule
            lambda address=address: oai(live).responses.create(
                model="tiny",
                input=[{"role": "user", "content": [{"type": "input_image", "image_url": address, "detail": "auto"}]}],
                stream=True,
            )
        )
        message = str(cast(dict[str, Any], o.body)["message"])
        assert o.status_code == 400 and message.startswith("input.0.content.0.image_url: a URL;"), message

    # other media parts the model server might read from an address, streamed as well
    for part in (
        {"type": "input_audio", "input_audio": {"data": url, "format": "wav"}},
        {"type": "video_url", "video_url": {"url": url}},
        {"type": "file", "file": {"file_data": url}},
    ):
        field = str(part["type"])
        o = openai_error(
            lambda part=part: oai(live).chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": [part]}], max_tokens=2, stream=True
            )
        )
        assert o.status_code == 400 and f"messages[0].content[0].{field}" in str(
            cast(dict[str, Any], o.body)["message"]
        )

    for kind, source in (("image", {"type": "url", "url": url}), ("document", {"type": "url", "url": url})):
        block: Any = {"type": kind, "source": source}
        a = anthropic_error(
            lambda block=block: ant(live).messages.create(
                model="tiny",
                messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, block]}],
                max_tokens=2,
            )
        )
        assert a.status_code == 400 and isinstance(a, anthropic.BadRequestError)
        body = cast(dict[str, Any], a.body)
        assert body["type"] == "error" and body["error"]["message"].startswith("messages.0.content.1.source:")
        assert "inline" in body["error"]["message"]

    # the model still answers after all of that, and the listener was never contacted ...
    chat = oai(live).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert chat.choices
    assert listener.accepted == 0
    # ... though it does accept connections: the count above could have been more than zero
    socket.create_connection(("127.0.0.1", listener.port)).close()
    assert listener.got_one.wait(timeout=30) and listener.accepted == 1
